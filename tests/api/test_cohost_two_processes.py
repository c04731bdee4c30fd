"""Issue 15 across two real app processes on one Redis and one database: the co-host added on process B is
a host on process A (the hosts of a room are known to every process), and a client's request to talk made
on A reaches the host on B, whose acknowledgement comes back to A."""

from __future__ import annotations

import subprocess
import sys

from tests.api.test_two_processes import PASSWORD, App, two_apps
from vIOP.client.session import HttpApi, RoomClient
from vIOP.signaling import messages as m

__all__ = ["two_apps"]  # the fixture, shared with tests/api/test_two_processes.py


async def test_a_cohost_and_a_request_to_talk_cross_processes(two_apps: tuple[App, App]) -> None:
    a, b = two_apps
    made = subprocess.run(
        [sys.executable, "-m", "vIOP", "users", "create", "--role", "clinician", "--username", "dr.co",
         "--display-name", "Dr. Co", "--password-stdin"],
        input=PASSWORD, env=a.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    api_a, api_b = HttpApi(a.base_url), HttpApi(b.base_url)
    people: list[RoomClient] = []
    try:
        host_token = await api_b.login("dr.two", PASSWORD)
        headers = {"Authorization": f"Bearer {host_token}"}
        room = (
            await api_b.http.post("/api/v1/rooms", json={"kind": "group", "title": "Two"}, headers=headers)
        ).json()
        added = await api_b.http.post(
            f"/api/v1/rooms/{room['id']}/cohosts", json={"username": "dr.co"}, headers=headers
        )
        assert added.status_code == 201, added.text
        invite = (await api_b.http.post(f"/api/v1/rooms/{room['id']}/invites", json={"display_name": "Kim"},
                                        headers=headers)).json()  # fmt: skip

        host = RoomClient(api_b.ticket_source(host_token, room["id"]), origin=b.base_url)
        cohost_token = await api_a.login("dr.co", PASSWORD)
        cohost = RoomClient(api_a.ticket_source(cohost_token, room["id"]), origin=a.base_url)
        client = RoomClient(api_a.ticket_source(invite["invite_token"], room["id"]), origin=a.base_url)
        people += [host, cohost, client]
        await host.join()
        assert (await cohost.join()).role is m.Role.HOST  # a host on A, added through B
        await client.join()
        await client.wait_message(m.Waiting)
        await client.send(m.NeedToTalk())
        seen = await host.wait_message(m.TalkRequest)  # asked on A, told on B
        assert seen == m.TalkRequest(participant_id=client.participant_id, pending=True)
        await cohost.wait_message(m.TalkRequest)
        await cohost.send(m.Admit(participant_id=client.participant_id))
        await client.wait_message(m.Admitted)
        await host.send(m.AcknowledgeNeed(participant_id=client.participant_id))
        cleared = await client.wait_message(m.TalkRequest, where=lambda t: not t.pending)
        assert cleared.participant_id == client.participant_id
    finally:
        for person in people:
            await person.close()
        await api_a.close()
        await api_b.close()
