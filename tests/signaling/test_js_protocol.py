"""The web client's protocol module is generated from messages.py and must not drift from it."""

from __future__ import annotations

import re

from vIOP.signaling import js_protocol, messages, presence_messages


def test_committed_js_protocol_module_is_current() -> None:
    # Regenerate in memory and compare bytes: a change to messages.py without regenerating fails here.
    committed = js_protocol.OUTPUT_PATH.read_bytes()
    assert committed == js_protocol.render().encode("utf-8"), (
        "vIOP/web/static/js/protocol.js is stale: run python -m vIOP.signaling.js_protocol"
    )


def test_check_mode_reports_a_stale_file(tmp_path: object) -> None:
    from pathlib import Path

    stale = Path(str(tmp_path)) / "protocol.js"
    stale.write_text(
        js_protocol.render().replace("PROTOCOL_VERSION = ", "PROTOCOL_VERSION = 9"), encoding="utf-8"
    )
    assert js_protocol.main(["--check", "--output", str(stale)]) == 1
    assert js_protocol.main(["--output", str(stale)]) == 0
    assert js_protocol.main(["--check", "--output", str(stale)]) == 0


def test_module_carries_every_type_close_code_and_limit() -> None:
    text = js_protocol.render()
    for tag in messages.CLIENT_TYPE_NAMES | messages.SERVER_TYPE_NAMES:
        assert f'"{tag}"' in text
    for code in messages.CloseCode:
        assert f"  {code.name}: {int(code)}," in text
    assert f"export const MAX_DISPLAY_NAME_CHARS = {messages.MAX_DISPLAY_NAME_CHARS};" in text
    assert f"export const MAX_SDP_CHARS = {messages.MAX_SDP_CHARS};" in text
    assert f"export const PROTOCOL_VERSION = {messages.PROTOCOL_VERSION};" in text


def test_module_carries_the_presence_stream_types() -> None:
    text = js_protocol.render()
    for cls in presence_messages.PRESENCE_SERVER_MESSAGE_TYPES:
        tag = cls.__struct_config__.tag
        assert f'  {str(tag).upper()}: "{tag}",' in text
    assert f'  PING: "{presence_messages.PRESENCE_PING}",' in text


def test_no_hand_copied_protocol_constants_left_in_the_client() -> None:
    # Close codes and the protocol version come from protocol.js only; pages take limits from it too.
    js_dir = js_protocol.OUTPUT_PATH.parent
    for path in js_dir.rglob("*.js"):
        if path == js_protocol.OUTPUT_PATH:
            continue
        source = path.read_text(encoding="utf-8")
        for code in messages.CloseCode:
            hard_coded = re.search(rf"(close\(\s*|=\s*){int(code)}\b", source)
            assert not hard_coded, f"{path.name} hard-codes close code {int(code)}"
        assert "protocol_version: 1" not in source, path.name
