"""docker-compose.yml and the Dockerfile: the services exist, are health-checked, and hold no secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SECRET_WORDS = re.compile(r"(?i)(password|secret|keys?$|token|requirepass)")
ENV_REF = re.compile(r"\$\{[A-Z0-9_]+:\?[^}]*\}")


def test_services_and_healthchecks() -> None:
    services = COMPOSE["services"]
    assert set(services) >= {"app", "redis", "postgres", "coturn"}
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        assert service["healthcheck"]["test"], name
    assert services["app"]["build"] == "."
    assert services["app"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["app"]["environment"]["VIOP_ENV"] == "production"


def test_redis_has_aof_and_a_password_from_the_environment() -> None:
    command = " ".join(COMPOSE["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--requirepass" in command
    assert ENV_REF.fullmatch(COMPOSE["services"]["redis"]["environment"]["REDIS_PASSWORD"])


def test_coturn_uses_the_shared_secret_scheme() -> None:
    command = " ".join(COMPOSE["services"]["coturn"]["command"])
    assert "--use-auth-secret" in command
    assert ENV_REF.fullmatch(COMPOSE["services"]["coturn"]["environment"]["TURN_SECRET"])


def test_every_secret_comes_from_the_environment() -> None:
    checked = 0
    for name, service in COMPOSE["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_WORDS.search(key) or (isinstance(value, str) and "://" in value and "@" in value):
                checked += 1
                assert ENV_REF.search(str(value)), f"{name}.{key} is written in the file"
    assert checked >= 6
    text = (ROOT / "docker-compose.yml").read_text()
    without_refs = ENV_REF.sub("", text)
    assert not re.search(r"(?i)(password|secret)\s*[:=][ \t]*['\"]?[A-Za-z0-9]{6,}", without_refs), (
        "a literal secret appears in docker-compose.yml"
    )


def test_dockerfile_runs_unprivileged_and_healthchecks() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "USER viop" in text
    assert "HEALTHCHECK" in text
    assert 'python", "-m", "vIOP", "serve"' in text
