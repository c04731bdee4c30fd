"""One valid instance of every wire message, shared by the signaling tests."""

from __future__ import annotations

from vIOP.signaling import messages as m

PID = "pt_AbCdEfGhIjKlMnOp"
PID2 = "pt_QrStUvWxYz012345"
RID = "rm_0123456789abcdef"
TOKEN = "rt_" + "A" * 43
SDP = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp-mux\r\na=mid:0\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=fingerprint:sha-256 AB:CD:EF\r\na=setup:actpass\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n"
)
CANDIDATE = (
    "candidate:842163049 1 udp 1677729535 127.0.0.1 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0"
)

ROSTER_ENTRY = m.RosterEntry(
    participant_id=PID,
    display_name="Alex",
    role=m.Role.CLIENT,
    audio=True,
    video=False,
    hand=True,
    muted_by_host=False,
)

CLIENT_SAMPLES: tuple[m.ClientMessage, ...] = (
    m.Join(),
    m.Join(resume_token=TOKEN, audio=False, video=True, id="j-1"),
    m.Offer(sdp=SDP, id=1),
    m.Answer(sdp=SDP),
    m.Candidate(candidate=CANDIDATE, sdp_mid="0", sdp_mline_index=0),
    m.Candidate(candidate=""),
    m.Leave(),
    m.SetMedia(audio=False),
    m.SetMedia(video=True, audio=True),
    m.RaiseHand(up=True),
    m.SetSubscriptions(tiles=(m.Tile(participant="pt_abc", width=320, height=180),)),
    m.SaveData(on=True),
    m.Ping(id=2**53 - 1),
    m.Admit(participant_id=PID),
    m.AdmitAll(),
    m.Deny(participant_id=PID, message="The group is full today; your clinician will call you."),
    m.LobbyMessage(participant_id=PID, message="Starting in 5 minutes"),
    m.ReturnToLobby(participant_id=PID),
    m.Mute(participant_id=PID),
    m.Mute(participant_id=PID, kind=m.MediaKind.VIDEO, muted=False),
    m.Remove(participant_id=PID, message="Removed by the clinician"),
    m.Lock(),
    m.Unlock(),
    m.End(),
    # chat (issue 15)
    m.Chat(text="Running 5 minutes late"),
    m.Chat(text="Can we talk after group?", private=True, id="c-1"),
    m.Chat(text="Of course", private=True, to=PID),
    m.SetChatPolicy(clients_may_chat=False),
    m.NeedToTalk(),
    m.AcknowledgeNeed(participant_id=PID),
    m.StartBreakout(participant_id=PID),
    m.StartBreakout(participant_id=PID, clinician_id="pt_clinician", id="b-1"),
    m.EndBreakout(participant_id=PID),
    # screen share (issue 15)
    m.StartShare(),
    m.StopShare(),
    m.AllowShare(participant_id=PID),
    m.RevokeShare(participant_id=PID),
)

SERVER_SAMPLES: tuple[m.ServerMessage, ...] = (
    m.Welcome(
        protocol_version=m.PROTOCOL_VERSION,
        participant_id=PID,
        room_id=RID,
        role=m.Role.HOST,
        resume_token=TOKEN,
        resume_grace_seconds=60,
        heartbeat_seconds=10,
        resumed=False,
        ice_servers=(
            m.IceServer(
                urls=("turn:127.0.0.1:3478?transport=udp",), username="1700000000:pt_x", credential="c2VjcmV0"
            ),
            m.IceServer(urls=("stun:127.0.0.1:3478",)),
        ),
        id="j-1",
    ),
    m.Waiting(position=3),
    m.Waiting(position=1, message="Starting in 5 minutes"),
    m.Lobby(waiting=(m.LobbyEntry(participant_id=PID, display_name="Sam", waited_seconds=95),)),
    m.Admitted(),
    m.Denied(message="Not today"),
    m.Denied(),
    m.Roster(participants=(ROSTER_ENTRY,), locked=True),
    m.ParticipantJoined(participant=ROSTER_ENTRY),
    m.ParticipantLeft(participant_id=PID, reason=m.LeaveReason.TIMEOUT),
    m.Reconnecting(participant_id=PID),
    m.ServerOffer(sdp=SDP),
    m.ServerAnswer(sdp=SDP, id=1),
    m.ServerCandidate(candidate=CANDIDATE, sdp_mid="1", sdp_mline_index=1),
    m.MediaChanged(participant_id=PID2, audio=False, video=True),
    m.AudioOnly(participant_id=PID2, on=True, reason=m.AudioOnlyReason.BANDWIDTH),
    m.MediaMoved(reason=m.MediaMoveReason.NODE_LOST),
    m.MediaMoved(reason=m.MediaMoveReason.DRAIN),
    m.Muted(participant_id=PID, kind=m.MediaKind.AUDIO, muted=True),
    m.Removed(message="Removed by the clinician"),
    m.ReturnedToLobby(),
    m.RoomLocked(),
    m.RoomUnlocked(),
    m.RoomEnded(),
    m.HandRaised(participant_id=PID, up=False),
    m.TalkRequest(participant_id=PID, pending=True),
    m.Breakout(participant_id=PID, clinician_id="pt_clinician", clinician_name="Dr. Rivera", active=True),
    m.ActiveSpeaker(speaker=PID2, recent=(PID2, PID)),
    m.ActiveSpeaker(speaker=None, recent=()),
    m.ErrorMessage(code="forbidden", message="a client may not admit here", id=7),
    m.Pong(id="p"),
    # chat (issue 15)
    m.ChatMessage(
        sender=PID,
        sender_name="Sam",
        sender_role=m.Role.CLIENT,
        text="hi all",
        private=False,
        thread=None,
        sent_at=1_700_000_000_000,
    ),
    m.ChatMessage(
        sender=PID2,
        sender_name="Dr. Lee",
        sender_role=m.Role.HOST,
        text="<b>not markup</b>",
        private=True,
        thread=PID,
        sent_at=1_700_000_000_000,
        id="c-1",
    ),
    m.ChatPolicy(clients_may_chat=False),
    m.ShareState(sharer=PID, allowed=(PID,)),
    m.ShareState(sharer=None, allowed=()),
)
