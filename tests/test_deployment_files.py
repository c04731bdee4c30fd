"""docker-compose.yml and the Dockerfile: the services exist, are health-checked, and hold no secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from vIOP.server import uvicorn_config
from vIOP.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SECRET_WORDS = re.compile(r"(?i)(password|secret|keys?$|token|requirepass)")
ENV_REF = re.compile(r"\$\{[A-Z0-9_]+:\?[^}]*\}")


def test_services_and_healthchecks() -> None:
    services = COMPOSE["services"]
    assert set(services) >= {"app1", "app2", "nginx", "redis", "postgres", "coturn"}
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        assert service["healthcheck"]["test"], name
    for app in ("app1", "app2"):
        assert services[app]["build"] == "."
        assert services[app]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[app]["environment"]["VIOP_ENV"] == "production"


def test_two_nodes_behind_the_nginx_config_the_nginx_test_runs() -> None:
    """Issue 14: two nodes, each its own id, port (the one config/nginx/upstream.conf names and its
    healthcheck asks) and media address, behind nginx mounting config/nginx (tests/cluster/test_behind_nginx.py
    runs those files with a real nginx)."""
    services = COMPOSE["services"]
    upstream = (ROOT / "config" / "nginx" / "upstream.conf").read_text()
    nodes = [services["app1"]["environment"], services["app2"]["environment"]]
    assert len({env["VIOP_NODE_ID"] for env in nodes}) == 2
    assert len({env["VIOP_ICE_HOST_ADDRESSES"] for env in nodes}) == 2  # one variable each
    for name, env in zip(("app1", "app2"), nodes, strict=True):
        assert f"server 127.0.0.1:{env['VIOP_PORT']} " in upstream, name
        assert f"127.0.0.1:{env['VIOP_PORT']}/readyz" in " ".join(services[name]["healthcheck"]["test"])
        assert env["VIOP_HOST"] == "127.0.0.1"  # reached through nginx only
        assert env["VIOP_TRUSTED_PROXIES"] == "127.0.0.1"  # nginx's X-Forwarded-For is believed
        assert ENV_REF.fullmatch(env["VIOP_ICE_HOST_ADDRESSES"]), name
    nginx = services["nginx"]
    assert "./config/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert "./config/nginx:/etc/nginx/viop:ro" in nginx["volumes"]
    assert {dep for dep, cond in nginx["depends_on"].items() if cond["condition"] == "service_healthy"} == {
        "app1",
        "app2",
    }


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


def test_the_proxys_websocket_idle_limit_outlasts_the_nodes_pings() -> None:
    """3-hour sessions through nginx: its WebSocket timeouts are idle limits, and every node pings each socket
    (uvicorn's ws_ping_interval), so a live socket is never idle for as long as nginx waits."""
    server = (ROOT / "config" / "nginx" / "server.conf").read_text()
    websockets = re.search(r"location ~ \^/ws/\(signal\|presence\)\$ \{(.*?)\}", server, re.S)
    assert websockets is not None
    timeouts = [int(t) for t in re.findall(r"proxy_(?:read|send)_timeout (\d+)s;", websockets.group(1))]
    config = uvicorn_config(object(), load_settings({}))
    assert config.ws_ping_interval is not None and config.ws_ping_timeout is not None
    assert len(timeouts) == 2
    assert min(timeouts) > config.ws_ping_interval + config.ws_ping_timeout
