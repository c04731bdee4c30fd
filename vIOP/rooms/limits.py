"""Field limits shared by every layer: each number is defined here once.

The domain enforces them, the signaling codec (``vIOP/signaling/messages.py``) and the relay bound the wire
with them, the HTTP API's Structs and the web forms (through the generated ``protocol.js``) take them from
here, and ``tests/test_limits.py`` checks that docs/PROTOCOL.md and docs/API.md state the same numbers.
"""

from __future__ import annotations

from typing import Final

# A person's display name (an account's shown name, an invite's client name, a participant on the wire).
# 64 is what accounts and invites have always accepted, so every stored name fits.
MAX_DISPLAY_NAME_CHARS: Final = 64
# A host's message to one participant: a lobby message, a denial, a removal. 500 is what the wire has
# always carried, so every stored message fits.
MAX_MESSAGE_CHARS: Final = 500
# A room's title, after trimming.
MAX_ROOM_TITLE_CHARS: Final = 120
# A room's client seats (1 to this).
MAX_ROOM_CAPACITY: Final = 50
# Client SDP (offer or answer). Measured with aiortc 1.16: a 15-person room's answer is 43 KB (offer
# 46 KB), so 32 KiB would cap rooms near 11 people; 56 KiB still fits one 64 KiB frame with JSON escaping.
MAX_SDP_CHARS: Final = 56 * 1024
# One ICE candidate line from a client ("" ends the candidates).
MAX_CANDIDATE_CHARS: Final = 1024

# --- chat (issue 15) -------------------------------------------------------------------------------------
# One chat message (room, private or lobby chat), in characters (code points).
MAX_CHAT_CHARS: Final = 1000
# Chat messages one sender may send: a burst of this many, then this many per second (a token bucket per
# socket, in the memory of the process that holds the socket).
CHAT_BURST: Final = 5
CHAT_PER_SECOND: Final = 1.0
# The room's chat record (kept sealed in Redis while the room is live, for a host's transcript save): the
# newest this many lines, and gone this long after the last line if the room's end did not delete it (a line
# that raced the end).
CHAT_RECORD_LINES: Final = 2000
CHAT_RECORD_TTL_SECONDS: Final = 12 * 3600
