"""The media relay: encoded frames forwarded between participants' peer connections, never re-encoded.

One concept per module (see docs/MEDIA.md): ``relay`` (the API the signaling layer calls), ``peer`` (one
participant's connection), ``fanout`` (a publisher's track copied to subscribers), ``direct_sender`` (the
fast path out) over ``rtp`` (pure RTP/RTX pack and parse), ``frames``, ``keyframes``, ``codec_plan``,
``sdp``, ``ice``, ``ice_gathering``, ``egress``; every use of aiortc internals is in ``aiortc_internals``.
"""
