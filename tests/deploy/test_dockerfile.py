"""deploy/Dockerfile and .dockerignore, checked without a Docker engine.

The Dockerfile is read by BuildKit's own parser (the `dockerfile` package
wraps it); the build context is cut by docker-py's implementation of the
.dockerignore rules, and the image's install step is replayed on that context.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

dockerfile = pytest.importorskip("dockerfile", reason="pip install dockerfile")


@pytest.fixture(scope="module")
def commands() -> list[Any]:
    parsed: list[Any] = list(dockerfile.parse_file(str(DOCKERFILE)))
    return parsed


def of(commands: list[Any], cmd: str) -> list[Any]:
    return [c for c in commands if c.cmd == cmd]


def index_of(commands: list[Any], predicate: Any) -> int:
    for i, c in enumerate(commands):
        if predicate(c):
            return i
    raise AssertionError("no such instruction")


def test_one_stage_on_python_311_slim(commands: list[Any]) -> None:
    """The base is the ARG PYTHON_IMAGE, whose default is the official image."""
    froms = of(commands, "FROM")
    assert len(froms) == 1
    assert froms[0].value[0] == "${PYTHON_IMAGE}"
    first_from = index_of(commands, lambda c: c is froms[0])
    args = [c.value[0] for c in commands[:first_from] if c.cmd == "ARG"]
    assert args == ["PYTHON_IMAGE=python:3.11-slim"]


def test_runs_as_a_non_root_user(commands: list[Any]) -> None:
    users = of(commands, "USER")
    assert users, "no USER: the gateway would run as root"
    user = users[-1].value[0].split(":")[0]
    assert user not in ("root", "0")
    last_user = index_of(commands, lambda c: c is users[-1])
    assert all(c.cmd != "RUN" for c in commands[last_user:]), "RUN after USER needs root"


def test_healthcheck_probes_healthz(commands: list[Any]) -> None:
    checks = of(commands, "HEALTHCHECK")
    assert len(checks) == 1
    assert checks[0].value == ("CMD", "python", "-m", "deploy.healthcheck")
    assert any(f.startswith("--interval=") for f in checks[0].flags)


def test_dependencies_install_before_the_code_is_copied(commands: list[Any]) -> None:
    """Code changes must not invalidate the dependency layer."""
    copies = of(commands, "COPY")
    assert copies[0].value == ("pyproject.toml", "./")
    deps = index_of(commands, lambda c: c.cmd == "RUN" and "-r /tmp/requirements.txt" in c.value[0])
    code = index_of(commands, lambda c: c.cmd == "COPY" and c.value[0] == ".")
    install = index_of(commands, lambda c: c.cmd == "RUN"
                       and "pip install --no-cache-dir ." in c.value[0])
    assert index_of(commands, lambda c: c is copies[0]) < deps < code < install
    for c in of(commands, "RUN"):
        if "pip install" in c.value[0]:
            assert "--no-cache-dir" in c.value[0]


def test_entrypoint_and_ports(commands: list[Any]) -> None:
    assert of(commands, "ENTRYPOINT")[0].value == ("chat-gateway",)
    assert set(of(commands, "EXPOSE")[0].value) == {"5050", "8050"}


def test_dependency_step_lists_exactly_the_project_dependencies(
    commands: list[Any], tmp_path: Path
) -> None:
    """Replay the RUN that writes requirements.txt: it must list pyproject's dependencies."""
    run = next(c for c in of(commands, "RUN") if "/tmp/requirements.txt" in c.value[0])
    first = run.value[0].split(" && ")[0]
    out = tmp_path / "requirements.txt"
    words = shlex.split(first.replace("/tmp/requirements.txt", str(out)))
    assert words[:2] == ["python", "-c"] and words[3] == ">"
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with out.open("w") as f:
        subprocess.run([sys.executable, "-c", words[2]], cwd=tmp_path, stdout=f, check=True,
                       timeout=30)
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert out.read_text().split() == wanted


def build_context(tmp_path: Path) -> Path:
    """Copy what `docker build` would send: the repo minus .dockerignore's matches."""
    build = pytest.importorskip("docker.utils.build", reason="pip install docker")
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    context = tmp_path / "context"
    for rel in sorted(build.exclude_paths(str(ROOT), patterns, dockerfile="deploy/Dockerfile")):
        source = ROOT / rel
        target = context / rel
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return context


def test_dockerignore_keeps_out_tests_and_local_state(tmp_path: Path) -> None:
    context = build_context(tmp_path)
    assert (context / "pyproject.toml").is_file()
    assert (context / "gateway" / "__main__.py").is_file()
    assert (context / "deploy" / "healthcheck.py").is_file()
    assert not (context / "tests").exists()
    assert not (context / ".git").exists()
    assert not list(context.rglob("__pycache__"))


def test_image_install_step_finds_everything_in_the_context(tmp_path: Path) -> None:
    """`pip install .` in the image sees only what .dockerignore lets in: enough to build.

    setuptools' egg_info is the metadata step of that build, run offline on the
    context: it reads pyproject.toml and the readme and discovers the packages.
    """
    context = build_context(tmp_path)
    egg_base = tmp_path / "egg"
    egg_base.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()",
         "egg_info", "--egg-base", str(egg_base)],
        cwd=context, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (info,) = egg_base.glob("*.egg-info")
    sources = set((info / "SOURCES.txt").read_text().split())
    for module in ("gateway/__main__.py", "protocol/codec.py", "deploy/healthcheck.py"):
        assert module in sources
    assert "chat-gateway = gateway.__main__:main" in (info / "entry_points.txt").read_text()
