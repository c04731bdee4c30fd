"""Why a participant receives no video: one enum for the relay, the wire and records."""

from __future__ import annotations

import enum


class AudioOnlyReason(enum.StrEnum):
    BANDWIDTH = "bandwidth"  # the relay found the participant's downlink cannot carry the video
    SAVE_DATA = "save_data"  # the participant chose audio only
