// @ts-check
// A read-only diagnostics handle on window.viop for support staff and the browser tests: the session's
// phase, own participant id, inbound media statistics per participant and outbound per simulcast layer (from
// getStats()), and the active speaker as the grid shows it.
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
    speaker: () => ({ speaker: session.grid.speaker, recent: [...session.grid.recent], compact: session.grid.constrained }),
  });
}
