"""podman as the Docker engine of the live compose tier (tests/deploy/test_compose_live.py).

The Compose CLI drives podman through its Docker API (``podman system
service`` on a unix socket, reached through ``DOCKER_HOST``). What this kind
of machine needs beyond that (issue 14):

- runc as the OCI runtime (crun fails: "cgroups in hybrid mode not
  supported"), cgroupfs and a file for events (no systemd), default
  limits within the hard limits the sandbox allows, and a resolver that
  asks again after 1 s (Debian's aardvark-dns 1.4 drops the queries that
  arrive while it reloads, at every container start and stop; fixed in
  aardvark-dns 1.11): a containers.conf written for the run
  (``CONTAINERS_CONF``).
- No systemd timers, so nothing runs healthchecks and ``depends_on:
  service_healthy`` would wait forever: ``HealthChecks`` runs ``podman
  healthcheck run`` on every running container of a project that has one.
- No image registry: ``standin_images`` builds stand-ins for ``redis:7``,
  ``haproxy:2.8`` and ``python:3.11-slim`` from Debian bookworm
  (tests/deploy/podman), cached: the root file system as a tarball under
  ~/.cache/chatservice, the images in podman's store under names keyed by
  their recipe, so a second run builds nothing.

Each object here is owned by the thread that made it; ``HealthChecks`` has
one thread of its own, which shares nothing but its stop event.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import resource
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import docker

from tests.conftest import require_file, require_program, unavailable
from tests.support.waiting import wait_for

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "tests" / "deploy" / "podman"
OVERRIDE = RECIPES / "compose.podman.yml"

SUITE = "bookworm"
PACKAGES = ("python3", "python3-pip", "python-is-python3", "ca-certificates",
            "redis-server", "haproxy")
"""One root file system for the three stand-ins: a single debootstrap is the slow part."""
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
LIMIT_CAP = 65536
"""docker-compose.yml asks for 65536 open files; never more than that, nor than the hard limit."""
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DNS_OPTIONS = ("timeout:1", "attempts:5")
"""The containers' resolver asks again after 1 s, not 5: aardvark-dns here loses queries
(containers_conf)."""

_PROGRAMS = (("podman", "podman"), ("runc", "runc"), ("conmon", "conmon"),
             ("catatonit", "catatonit"), ("iptables", "iptables"))
_FILES = (("/usr/lib/podman/netavark", "netavark"),
          ("/usr/lib/podman/aardvark-dns", "aardvark-dns"))


def require_podman() -> None:
    """Skip (fail in CI) naming what is missing for rootful podman with Compose."""
    for program, package in _PROGRAMS:
        require_program(program, package)
    for path, package in _FILES:
        require_file(path, package)
    if os.geteuid() != 0:
        unavailable("the compose tier runs rootful podman (netavark networks, "
                    "debootstrap): run it as root")


def _limit(kind: int) -> int:
    _, hard = resource.getrlimit(kind)
    limit = LIMIT_CAP if hard == resource.RLIM_INFINITY else min(LIMIT_CAP, hard)
    if kind == resource.RLIMIT_NPROC:
        # No more processes than process ids: podman lowers its own nproc to
        # kernel.pid_max, and a container cannot get more than podman has.
        limit = min(limit, int(Path("/proc/sys/kernel/pid_max").read_text()))
    return limit


def _hard_limits(pid: int) -> dict[str, int]:
    """The hard limits of process ``pid`` that containers inherit (from /proc)."""
    names = {"Max open files": "nofile", "Max processes": "nproc"}
    limits: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        for label, name in names.items():
            if line.startswith(label):
                hard = line[len(label):].split()[1]
                limits[name] = LIMIT_CAP if hard == "unlimited" else int(hard)
    return limits


def containers_conf(nofile: int, nproc: int) -> str:
    """podman's settings for this machine (see the module docstring)."""
    return "\n".join([
        "# Written by tests/support/podman.py for the live compose tier.",
        "[containers]",
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]',
        # aardvark-dns before 1.11 (Debian's is 1.4) drops the queries it receives while
        # it reloads, which it does at every container start and stop on the host; the
        # resolver then waits its timeout (5 s by default) before it asks again.
        f"dns_options = {json.dumps(list(DNS_OPTIONS))}",
        'log_driver = "k8s-file"',
        "[engine]",
        'runtime = "runc"',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        "",
    ])


def run(command: Sequence[str], env: dict[str, str], timeout: float,
        what: str) -> subprocess.CompletedProcess[str]:
    """Run ``command``; on failure, fail the test naming ``what`` with the output's end."""
    result = subprocess.run(list(command), env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise AssertionError(f"{what} failed ({' '.join(command[:3])} ... exit "
                             f"{result.returncode}):\n{tail}")
    return result


@dataclass(frozen=True, slots=True)
class Podman:
    """A running ``podman system service`` and how to reach it."""

    docker_host: str
    env: dict[str, str]
    """The environment for podman commands: CONTAINERS_CONF set."""
    nofile: int
    nproc: int
    client: docker.DockerClient

    def podman(self, *args: str, timeout: float = 60, what: str = "podman",
               ) -> subprocess.CompletedProcess[str]:
        return run(["podman", *args], self.env, timeout, what)

    def image_exists(self, name: str) -> bool:
        return subprocess.run(["podman", "image", "exists", name], env=self.env,
                              capture_output=True, timeout=60, check=False).returncode == 0


@contextlib.contextmanager
def podman_service(run_dir: Path) -> Iterator[Podman]:
    """``podman system service`` on a socket in ``run_dir``, stopped on exit."""
    require_podman()
    nofile, nproc = _limit(resource.RLIMIT_NOFILE), _limit(resource.RLIMIT_NPROC)
    conf = run_dir / "containers.conf"
    conf.write_text(containers_conf(nofile, nproc))
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    socket_path = run_dir / "podman.sock"
    docker_host = f"unix://{socket_path}"
    log_path = run_dir / "podman-service.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(["podman", "system", "service", "--time=0", docker_host],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    client: docker.DockerClient | None = None
    try:
        def answers() -> docker.DockerClient | None:
            assert proc.poll() is None, f"podman system service exited: {log_path.read_text()}"
            with contextlib.suppress(docker.errors.DockerException):
                # The client asks for the API version as it is made.
                return docker.DockerClient(base_url=docker_host, timeout=120)
            return None

        client = wait_for(answers, timeout=30, interval=0.1, what="podman's Docker API to answer")
        assert client is not None  # wait_for returns what answered
        service = _hard_limits(proc.pid)
        if service["nofile"] < nofile or service["nproc"] < nproc:
            raise AssertionError(
                f"podman's service has hard limits {service}, below the nofile={nofile} "
                f"nproc={nproc} its containers are given: runc cannot raise them (no "
                "CAP_SYS_RESOURCE in this sandbox); lower them in tests/support/podman.py")
        yield Podman(docker_host, env, nofile, nproc, client)
    finally:
        if client is not None:
            client.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class HealthChecks:
    """Runs the healthcheck of every running container of ``project`` every ``interval`` s.

    podman schedules healthchecks with systemd timers; without systemd this
    does their job, so health turns from "starting" to "healthy" as on Docker.
    """

    def __init__(self, podman: Podman, project: str, interval: float = 2.0) -> None:
        self._podman = podman
        self._project = project
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"healthchecks-{project}")

    def __enter__(self) -> HealthChecks:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._round()
            except (OSError, subprocess.SubprocessError):
                logger.exception("healthcheck round failed")

    def _round(self) -> None:
        listed = subprocess.run(
            ["podman", "ps", "-q", "--filter", f"label=com.docker.compose.project={self._project}",
             "--filter", "health=starting", "--filter", "health=healthy",
             "--filter", "health=unhealthy"],
            env=self._podman.env, capture_output=True, text=True, timeout=30, check=False)
        checks = [subprocess.Popen(["podman", "healthcheck", "run", cid], env=self._podman.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for cid in listed.stdout.split()]
        for check in checks:
            try:
                check.wait(30)
            except subprocess.TimeoutExpired:
                check.kill()
                check.wait()


@dataclass(frozen=True, slots=True)
class StandinImages:
    """Local images in place of the official bases; never an official name."""

    redis: str
    haproxy: str
    python: str

    def compose_env(self) -> dict[str, str]:
        """The variables docker-compose.yml reads to use them."""
        return {"REDIS_IMAGE": self.redis, "HAPROXY_IMAGE": self.haproxy,
                "PYTHON_IMAGE": self.python}


def cache_dir() -> Path:
    """Where the root file system is kept between runs (CHAT_CACHE_DIR overrides)."""
    if configured := os.environ.get("CHAT_CACHE_DIR"):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chatservice"


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()[:12]


def _recipe_files() -> list[Path]:
    return sorted(p for p in RECIPES.iterdir()
                  if p.name.endswith((".Containerfile", "-entrypoint.sh")))


def standin_images(podman: Podman, cache: Path | None = None) -> StandinImages:
    """The stand-in images, built now unless a previous run built this recipe."""
    if not HOST_CA_BUNDLE.is_file():
        unavailable(f"{HOST_CA_BUNDLE} missing: install the Debian package 'ca-certificates'")
    base_key = _digest(SUITE.encode(), " ".join(PACKAGES).encode())
    key = _digest(base_key.encode(), HOST_CA_BUNDLE.read_bytes(),
                  *(p.name.encode() + p.read_bytes() for p in _recipe_files()))
    images = StandinImages(*(f"localhost/chatservice-standin-{name}:{key}"
                             for name in ("redis", "haproxy", "python")))
    wanted = (images.redis, images.haproxy, images.python)
    if all(podman.image_exists(name) for name in wanted):
        return images
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "standin.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building the same
        base = f"localhost/chatservice-standin-base:{base_key}"
        if not podman.image_exists(base):
            rootfs = _rootfs_tarball(cache, base_key)
            podman.podman("import", "--change", f"ENV {PATH_ENV}", str(rootfs), base,
                          timeout=300, what=f"importing {rootfs}")
        with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
            context = Path(tmp)
            for recipe in _recipe_files():
                shutil.copy2(recipe, context / recipe.name)
            shutil.copy(HOST_CA_BUNDLE, context / "ca-certificates.crt")
            for name, tag in zip(("redis", "haproxy", "python"), wanted, strict=True):
                podman.podman("build", "-q", "--build-arg", f"BASE={base}",
                              "-f", str(context / f"{name}.Containerfile"), "-t", tag,
                              str(context), timeout=300, what=f"building the {name} stand-in")
    return images


def _rootfs_tarball(cache: Path, key: str) -> Path:
    """Debian ``SUITE`` (minbase plus ``PACKAGES``) as a tarball in ``cache``."""
    tarball = cache / f"rootfs-{SUITE}-{key}.tar"
    if tarball.is_file():
        return tarball
    debootstrap = require_program("debootstrap", "debootstrap")
    mirror = os.environ.get("CHAT_DEBIAN_MIRROR", DEFAULT_MIRROR)
    rootfs = cache / f"rootfs-{key}.tmp"
    shutil.rmtree(rootfs, ignore_errors=True)
    try:
        run([debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}",
             SUITE, str(rootfs), mirror], dict(os.environ), 600,
            f"debootstrap of Debian {SUITE} from {mirror} (CHAT_DEBIAN_MIRROR)")
        # As the official images: no package files nor package lists (~100 MB).
        for leftover in [*rootfs.glob("var/cache/apt/archives/*.deb"),
                         *rootfs.glob("var/lib/apt/lists/*_*")]:
            leftover.unlink()
        partial = tarball.with_suffix(".partial")
        run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], dict(os.environ), 300,
            "packing the root file system")
        partial.rename(tarball)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tarball
