// @ts-check
// A read-only diagnostics handle on window.viop for support staff and the browser tests: the session's
// phase, own participant id, inbound media statistics per participant and outbound per simulcast layer (from
// getStats()), the active speaker as the grid shows it, and the room's screen share (who shares, who may,
// whether we do).
// It exposes no token and no way to act.

/** @param {import("./room-session.js").RoomSession} session */
export function exposeDiagnostics(session) {
  window.viop = Object.freeze({
    phase: () => session.phase,
    phaseHistory: () => [...session.phaseHistory],
    lobbyKnocks: () => Object.fromEntries(session.lobbyKnocks),
    participantId: () => session.participantId,
    role: () => session.role,
    socketState: () => session.signaling.state,
    lastClose: () => session.signaling.lastClose ?? null,
    lastMessages: () => [...session.signaling.recentTypes],
    roster: () => [...session.roster.keys()],
    inboundStats: () => session.inboundStats(),
    outboundStats: () => session.outboundStats(),
    // Each m-line's negotiated direction (mid -> currentDirection): an `inactive` one carries no media.
    directions: () => Object.fromEntries((session.link?.pc.getTransceivers() ?? []).map((t) => [t.mid ?? "", t.currentDirection ?? ""])),
    speaker: () => ({ speaker: session.grid.speaker, recent: [...session.grid.recent], compact: session.grid.constrained }),
    share: () => ({
      sharer: session.share.sharer,
      allowed: [...session.share.allowed],
      mine: Boolean(session.shareTrack),
      endedAt: session.shareEndedAt,
      stateAt: session.shareStateAt,
      stage: session.grid.stage.hidden ? null : (session.grid.stage.dataset.sharer ?? null),
    }),
  });
}
