"""ICE configuration: validation, never Google's STUN, coturn-compatible TURN REST credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from vIOP.errors import BadRequest, ConfigError
from vIOP.ids import ParticipantId
from vIOP.media.ice import IceConfig, turn_rest_credentials

SECRET = "a-long-shared-secret-for-coturn"
PID = ParticipantId("pt_abc123")


def test_no_configured_servers_means_an_explicit_empty_list() -> None:
    config = IceConfig().server_configuration()
    assert config.iceServers == []  # None would make aiortc use stun.l.google.com


def test_server_uses_only_the_first_stun_url_and_never_turn() -> None:
    ice = IceConfig(
        server_urls=(
            "stun:stun.example.org:3478",
            "stun:other.example.org",
            "turn:turn.example.org?transport=udp",
        ),
        turn_secret=SECRET,
    )
    servers = ice.server_configuration().iceServers
    assert servers is not None and [s.urls for s in servers] == ["stun:stun.example.org:3478"]


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"host_addresses": ("localhost",)}, "ice_host_addresses"),
        ({"host_addresses": ("10.0.0.300",)}, "ice_host_addresses"),
        ({"server_urls": ("http://stun.example.org",)}, "ice_servers"),
        ({"server_urls": ("stun:stun.example.org?transport=udp",)}, "ice_servers"),
        ({"server_urls": ("turn:turn.example.org:99999",)}, "ice_servers"),
        ({"server_urls": ("turn:turn.example.org",)}, "turn_secret"),
        ({"turn_secret": "short"}, "turn_secret"),
        ({"turn_ttl_seconds": 5}, "turn_ttl_seconds"),
    ],
)
def test_invalid_configuration_names_the_setting(kwargs: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        IceConfig(**kwargs)  # type: ignore[arg-type]
    assert caught.value.setting == setting


def test_turn_rest_credentials_match_coturns_formula() -> None:
    creds = turn_rest_credentials(SECRET, PID, 1_800_000_000, ("turn:t.example.org",), now=1_799_990_000)
    assert creds.username == "1800000000:pt_abc123"
    expected = base64.b64encode(hmac.new(SECRET.encode(), creds.username.encode(), hashlib.sha1).digest())
    assert creds.password == expected.decode()
    assert creds.ttl_seconds == 10_000


def test_credentials_never_outlive_the_session() -> None:
    ice = IceConfig(server_urls=("turn:t.example.org",), turn_secret=SECRET, turn_ttl_seconds=4 * 3600)
    now = 1_800_000_000.0
    assert ice.turn_credentials(PID, now=now).expires_at == int(now) + 4 * 3600
    short = ice.turn_credentials(PID, now=now, session_ends_at=now + 600)
    assert short.expires_at == int(now) + 600 and short.ttl_seconds == 600
    with pytest.raises(BadRequest):
        ice.turn_credentials(PID, now=now, session_ends_at=now - 1)


def test_turn_credentials_refused_when_turn_is_not_configured() -> None:
    with pytest.raises(BadRequest):
        IceConfig(server_urls=("stun:s.example.org",)).turn_credentials(PID, now=0)


def test_client_ice_servers_carry_stun_as_is_and_turn_with_credentials() -> None:
    ice = IceConfig(
        server_urls=("stun:s.example.org", "turns:t.example.org:443?transport=tcp"), turn_secret=SECRET
    )
    stun, turn = ice.client_ice_servers(PID, now=1_800_000_000)
    assert stun.urls == ("stun:s.example.org",) and stun.username is None
    assert turn.urls == ("turns:t.example.org:443?transport=tcp",)
    assert turn.username is not None and turn.username.endswith(":pt_abc123") and turn.credential
    assert IceConfig().client_ice_servers(PID, now=0) == ()


def test_user_part_cannot_smuggle_a_colon() -> None:
    with pytest.raises(BadRequest):
        turn_rest_credentials(SECRET, "pt_x:999", 1, ("turn:t.example.org",), now=0)
