from __future__ import annotations

from pathlib import Path

import pytest

from vIOP.errors import ConfigError
from vIOP.server import uvicorn_config
from vIOP.settings import Settings, describe, load_settings, split_host_port


def test_defaults_are_the_embedded_development_setup() -> None:
    s = load_settings(environ={})
    assert s.env == "development"
    assert s.embedded_redis
    assert s.data_dir == Path("var")
    assert s.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert s.effective_database_url.endswith("var/viop.db")
    assert "http://127.0.0.1:8000" in s.effective_allowed_origins
    assert s.ws_max_message_bytes == 64 * 1024


def test_environment_is_parsed_and_typed() -> None:
    s = load_settings(
        environ={
            "VIOP_PORT": "9000",
            "VIOP_ALLOWED_ORIGINS": "https://clinic.example.org, https://staff.example.org/",
            "VIOP_ICE_HOST_ADDRESSES": "127.0.0.1",
            "VIOP_REDIS_URL": "redis://:pw@redis.internal:6379/0",
        }
    )
    assert s.port == 9000
    assert s.allowed_origins == ("https://clinic.example.org", "https://staff.example.org")
    assert s.ice_host_addresses == ("127.0.0.1",)
    assert s.effective_allowed_origins == s.allowed_origins


@pytest.mark.parametrize(
    ("environ", "setting"),
    [
        ({"VIOP_PORT": "99999"}, "VIOP_PORT"),
        ({"VIOP_PORT": "eighty"}, "VIOP_PORT"),
        ({"VIOP_REDIS_URL": "http://nope"}, "VIOP_REDIS_URL"),
        ({"VIOP_REDIS_URL": "redis://"}, "VIOP_REDIS_URL"),
        ({"VIOP_DATABASE_URL": "mysql://x/y"}, "VIOP_DATABASE_URL"),
        ({"VIOP_ALLOWED_ORIGINS": "clinic.example.org"}, "VIOP_ALLOWED_ORIGINS"),
        ({"VIOP_ICE_SERVERS": "http://stun.example.org"}, "VIOP_ICE_SERVERS"),
        ({"VIOP_ENV": "staging"}, "VIOP_ENV"),
        ({"VIOP_FROBNICATE": "1"}, "VIOP_FROBNICATE"),
        (
            {"VIOP_HEARTBEAT_SECONDS": "30", "VIOP_PRESENCE_EXPIRY_SECONDS": "20"},
            "VIOP_PRESENCE_EXPIRY_SECONDS",
        ),
        ({"VIOP_NODE_ID": "node a"}, "VIOP_NODE_ID"),
        ({"VIOP_NODE_ID": "{room:x}"}, "VIOP_NODE_ID"),
        ({"VIOP_NODE_CAPACITY": "0"}, "VIOP_NODE_CAPACITY"),
        ({"VIOP_WORKERS": "0"}, "VIOP_WORKERS"),
        ({"VIOP_WORKERS": "-1"}, "VIOP_WORKERS"),
        ({"VIOP_WORKERS": "65"}, "VIOP_WORKERS"),
        ({"VIOP_WORKERS": "two"}, "VIOP_WORKERS"),
        ({"VIOP_WORKERS": "2", "VIOP_NODE_ID": "n" * 63}, "VIOP_NODE_ID"),  # no room for "-2"
        ({"VIOP_NODE_HEARTBEAT_SECONDS": "5", "VIOP_NODE_TTL_SECONDS": "8"}, "VIOP_NODE_TTL_SECONDS"),
        (
            {
                "VIOP_NODE_HEARTBEAT_SECONDS": "5",
                "VIOP_ROOM_LEASE_SECONDS": "9",
                "VIOP_NODE_TTL_SECONDS": "10",
            },
            "VIOP_ROOM_LEASE_SECONDS",
        ),
    ],
)
def test_invalid_values_name_the_setting(environ: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ)
    assert info.value.setting == setting
    assert setting in info.value.message


def test_test_suite_variables_are_not_settings() -> None:
    assert load_settings(environ={"VIOP_TEST_POSTGRES_URL": "postgresql://x/y"}).env == "development"


_PROD = {
    "VIOP_ENV": "production",
    "VIOP_REDIS_URL": "rediss://redis.internal:6380/0",
    "VIOP_DATABASE_URL": "postgresql+asyncpg://viop@db.internal/viop",
    "VIOP_ALLOWED_ORIGINS": "https://clinic.example.org",
    "VIOP_KEY_FILE": "/run/secrets/viop-keys.json",
}


def test_production_accepts_explicit_configuration() -> None:
    assert load_settings(environ=_PROD).env == "production"


@pytest.mark.parametrize(
    "missing", ["VIOP_REDIS_URL", "VIOP_DATABASE_URL", "VIOP_ALLOWED_ORIGINS", "VIOP_KEY_FILE"]
)
def test_production_refuses_embedded_defaults(missing: str) -> None:
    environ = {k: v for k, v in _PROD.items() if k != missing}
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ)
    assert missing in info.value.message


def test_production_refuses_keys_inside_the_data_folder() -> None:
    with pytest.raises(ConfigError, match="outside the data folder"):
        load_settings(environ={**_PROD, "VIOP_DATA_DIR": "/srv/viop", "VIOP_KEY_FILE": "/srv/viop/keys.json"})


def test_toml_file_then_env_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "viop.toml"
    cfg.write_text('port = 8100\nallowed_origins = ["https://a.example.org"]\nlog_level = "debug"\n')
    s = load_settings(environ={"VIOP_CONFIG": str(cfg), "VIOP_PORT": "8200"})
    assert s.port == 8200
    assert s.allowed_origins == ("https://a.example.org",)
    assert s.log_level == "debug"
    assert s.source["log_level"].startswith("file")


def test_toml_unknown_key_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "viop.toml"
    cfg.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="colour"):
        load_settings(environ={"VIOP_CONFIG": str(cfg)})


def test_describe_masks_secrets() -> None:
    s = load_settings(environ={"VIOP_REDIS_URL": "redis://:hunter2@r:6379", "VIOP_TURN_SECRET": "s3cret"})
    shown = {name: value for name, value, _ in describe(s)}
    assert shown["VIOP_REDIS_URL"] == "********"
    assert shown["VIOP_TURN_SECRET"] == "********"
    assert "hunter2" not in repr(describe(s))


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


# --- relay egress (docs/MEDIA.md "Remote candidates") -------------------------------------------------------------------------------------------


def test_settings_default_allows_loopback_only_outside_production() -> None:
    assert load_settings({}).effective_ice_allow_loopback is True
    assert ("VIOP_ICE_ALLOW_LOOPBACK", "true", "default") in describe(load_settings({}))
    production = load_settings({}).with_overrides(env="production")
    assert production.effective_ice_allow_loopback is False
    assert production.with_overrides(ice_allow_loopback=True).effective_ice_allow_loopback is True


def test_settings_parse_and_show_the_egress_settings() -> None:
    loaded = load_settings(
        {
            "VIOP_ICE_REMOTE_ALLOW": "10.20.0.0/16, fd00::/8",
            "VIOP_ICE_ALLOW_LOOPBACK": "false",
            "VIOP_ICE_MAX_REMOTE_CANDIDATES": "12",
            "VIOP_PUBLIC_URL": "https://203.0.113.7",
        }
    )
    assert loaded.ice_remote_allow == ("10.20.0.0/16", "fd00::/8")
    assert loaded.effective_ice_allow_loopback is False
    assert loaded.ice_max_remote_candidates == 12
    assert loaded.own_ip_addresses == ("127.0.0.1", "203.0.113.7")
    rows = {name: shown for name, shown, _ in describe(loaded)}
    assert rows["VIOP_ICE_REMOTE_ALLOW"] == "10.20.0.0/16,fd00::/8"
    assert rows["VIOP_ICE_ALLOW_LOOPBACK"] == "false"
    assert rows["VIOP_ICE_MAX_REMOTE_CANDIDATES"] == "12"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("VIOP_ICE_REMOTE_ALLOW", "10.0.0.1/8"),
        ("VIOP_ICE_REMOTE_ALLOW", "clinic"),
        ("VIOP_ICE_ALLOW_LOOPBACK", "maybe"),
        ("VIOP_ICE_MAX_REMOTE_CANDIDATES", "0"),
        ("VIOP_ICE_MAX_REMOTE_CANDIDATES", "1000"),
    ],
)
def test_bad_egress_settings_name_the_setting(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        load_settings({var: value})


# --- list settings are comma-separated (README "Configuration") ----------------------------------------------


@pytest.mark.parametrize(
    ("var", "json_list", "written"),
    [
        ("VIOP_ICE_HOST_ADDRESSES", '["127.0.0.1", "10.0.0.2"]', "127.0.0.1,10.0.0.2"),
        ("VIOP_ALLOWED_ORIGINS", '["http://clinic.example.org:8000"]', "http://clinic.example.org:8000"),
        ("VIOP_ICE_SERVERS", "['stun:stun.example.org:3478']", "stun:stun.example.org:3478"),
        ("VIOP_ICE_REMOTE_ALLOW", "[10.20.0.0/16]", "10.20.0.0/16"),
    ],
)
def test_a_json_list_is_refused_with_the_comma_separated_form_to_write(
    var: str, json_list: str, written: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({var: json_list})
    assert info.value.setting == var
    assert info.value.message == (
        f"{var}: must be a comma-separated list, not JSON: write {written} (no brackets, no quotes)"
    )
    # ... and what it says to write is accepted.
    assert getattr(load_settings({var: written}), var[len("VIOP_") :].lower()) == tuple(written.split(","))


def test_an_empty_json_list_is_refused_with_how_to_write_none() -> None:
    with pytest.raises(ConfigError, match="for none, leave it empty or unset"):
        load_settings({"VIOP_ALLOWED_ORIGINS": "[]"})
    assert load_settings({"VIOP_ALLOWED_ORIGINS": ""}).allowed_origins == ()


# --- Redis Sentinel (docs/REDIS_HA.md) -----------------------------------------------------------------


def test_sentinels_replace_the_url_and_the_embedded_redis() -> None:
    s = load_settings(
        environ={
            "VIOP_REDIS_SENTINELS": "10.0.0.5:26379, sentinel-b:26379,[::1]:26380",
            "VIOP_REDIS_SENTINEL_MASTER": "viop",
            "VIOP_REDIS_SENTINEL_PASSWORD": "sentinel-secret",
            "VIOP_REDIS_PASSWORD": "master-secret",
        }
    )
    assert s.redis_sentinels == ("10.0.0.5:26379", "sentinel-b:26379", "[::1]:26380")
    assert [split_host_port(a) for a in s.redis_sentinels] == [
        ("10.0.0.5", 26379),
        ("sentinel-b", 26379),
        ("::1", 26380),
    ]
    assert not s.embedded_redis
    shown = {name: value for name, value, _ in describe(s)}
    assert shown["VIOP_REDIS_SENTINEL_PASSWORD"] == shown["VIOP_REDIS_PASSWORD"] == "********"
    assert "secret" not in repr(describe(s))


def test_production_accepts_sentinels_instead_of_a_url() -> None:
    environ = {k: v for k, v in _PROD.items() if k != "VIOP_REDIS_URL"}
    environ |= {"VIOP_REDIS_SENTINELS": "10.0.0.5:26379", "VIOP_REDIS_SENTINEL_MASTER": "viop"}
    assert load_settings(environ=environ).redis_sentinels == ("10.0.0.5:26379",)


_SENTINEL = {"VIOP_REDIS_SENTINELS": "10.0.0.5:26379", "VIOP_REDIS_SENTINEL_MASTER": "viop"}


@pytest.mark.parametrize(
    ("environ", "setting", "says"),
    [
        ({"VIOP_REDIS_SENTINELS": "10.0.0.5"}, "VIOP_REDIS_SENTINELS", "host:port"),
        ({"VIOP_REDIS_SENTINELS": "10.0.0.5:0"}, "VIOP_REDIS_SENTINELS", "port"),
        ({"VIOP_REDIS_SENTINELS": "s:26379,s:http"}, "VIOP_REDIS_SENTINELS", "port"),
        ({"VIOP_REDIS_SENTINELS": "::1:26379"}, "VIOP_REDIS_SENTINELS", "brackets"),
        ({"VIOP_REDIS_SENTINELS": '["s:26379"]'}, "VIOP_REDIS_SENTINELS", "comma-separated"),
        ({"VIOP_REDIS_SENTINELS": "s:26379"}, "VIOP_REDIS_SENTINEL_MASTER", "required"),
        ({**_SENTINEL, "VIOP_REDIS_URL": "redis://r:6379"}, "VIOP_REDIS_URL", "not both"),
        ({"VIOP_REDIS_SENTINEL_MASTER": "viop"}, "VIOP_REDIS_SENTINEL_MASTER", "VIOP_REDIS_SENTINELS"),
        ({"VIOP_REDIS_PASSWORD": "pw"}, "VIOP_REDIS_PASSWORD", "VIOP_REDIS_SENTINELS"),
        ({**_SENTINEL, "VIOP_REDIS_SENTINEL_MASTER": " "}, "VIOP_REDIS_SENTINEL_MASTER", "empty"),
    ],
)
def test_bad_sentinel_settings_name_the_setting(environ: dict[str, str], setting: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ)
    assert info.value.setting == setting
    assert says in info.value.message


def test_trusted_proxies_are_networks_and_turn_on_uvicorns_proxy_headers() -> None:
    """Behind nginx the peer is the proxy; only listed proxies' X-Forwarded-For is believed."""
    assert uvicorn_config(object(), load_settings({})).proxy_headers is False
    loaded = load_settings({"VIOP_TRUSTED_PROXIES": "127.0.0.1, 10.20.0.0/16"})
    assert loaded.trusted_proxies == ("127.0.0.1/32", "10.20.0.0/16")
    config = uvicorn_config(object(), loaded)
    assert config.proxy_headers is True
    assert config.forwarded_allow_ips == ["127.0.0.1/32", "10.20.0.0/16"]
    for bad in ("*", "proxy.local", "10.0.0.1/8"):
        with pytest.raises(ConfigError, match="VIOP_TRUSTED_PROXIES"):
            load_settings({"VIOP_TRUSTED_PROXIES": bad})
