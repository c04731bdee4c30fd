"""The media relay: each participant's one aiortc peer connection to the server, and their encoded audio and
video forwarded to the others without re-encoding.

``relay.py`` (``MediaRelay``) is the API the signaling layer calls; every use of aiortc internals is in
``passthrough.py``. Design and measurements: docs/MEDIA.md.
"""
