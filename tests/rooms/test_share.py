"""The screen-share rules of one room (issue 15): pure, no I/O."""

from __future__ import annotations

import pytest

from vIOP.ids import ParticipantId
from vIOP.rooms.share import NotSharing, RoomShare, ShareInProgress, ShareNotAllowed

HOST, COHOST, CLIENT, OTHER = (ParticipantId(f"pt_{n}") for n in ("host", "cohost", "client", "other"))


def test_a_host_shares_and_a_second_share_is_refused_without_change() -> None:
    share = RoomShare()
    assert share.start(HOST, is_host=True).changed
    with pytest.raises(ShareInProgress):
        share.start(COHOST, is_host=True)
    assert share.sharer == HOST
    assert not share.start(HOST, is_host=True).changed  # again: nothing new


def test_a_client_shares_only_while_allowed_and_revoking_stops_their_share() -> None:
    share = RoomShare()
    with pytest.raises(ShareNotAllowed):
        share.start(CLIENT, is_host=False)
    assert share.sharer is None and share.allowed == set()
    assert share.allow(CLIENT).changed
    share.start(CLIENT, is_host=False)
    change = share.revoke(CLIENT)
    assert change.changed and change.stopped == CLIENT
    assert share.sharer is None and CLIENT not in share.allowed
    with pytest.raises(ShareNotAllowed):
        share.start(CLIENT, is_host=False)


def test_stopping_a_share_one_does_not_run_is_refused() -> None:
    share = RoomShare(sharer=HOST)
    with pytest.raises(NotSharing):
        share.stop(CLIENT)
    assert share.sharer == HOST
    assert share.stop(HOST).stopped == HOST


def test_leaving_ends_the_share_and_the_permission_returning_to_the_lobby_only_the_share() -> None:
    share = RoomShare(allowed={CLIENT, OTHER})
    share.start(CLIENT, is_host=False)
    assert share.media_ended(CLIENT).stopped == CLIENT
    assert CLIENT in share.allowed
    share.start(CLIENT, is_host=False)
    change = share.left(CLIENT)
    assert change.stopped == CLIENT and share.allowed == {OTHER}
    assert not share.left(HOST).changed
