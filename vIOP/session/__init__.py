"""The application: what the process does with the domain, between the web edge and the stores.

- ``services.py``: :class:`Services`, the process's components (built once by ``vIOP/app.py``).
- ``live.py``: :class:`Live`, the typed live state (event delivery, live sockets, the audit recorder).
- ``signal.py``: :class:`SignalSession`, one per signaling socket; a handler table, one method per message.
- ``join.py``: join and resume, the session's first message (seat, ``welcome``, the first view).
- ``delivery.py``: room events projected onto the wire for this process's sockets, and onto its relay.
- ``media_controls.py``: each room's media controls (own flags, hands, host mutes) and the one route into
  the relay.
- ``loops.py``: the live loops: event delivery, the one sweeper, the one recovery loop (``repair``).
- ``revocation.py``: live sockets follow revocations and sign-outs.
- ``attendance_export.py``: the attendance export (filters, report, JSON document, CSV) for HTTP and CLI.
- ``wire_time.py``: times as the wire writes them (``iso``, ``IsoTime``).
- ``rooms_view.py``: the room view: the SQL directory merged with the live state; reads never write.
- ``room_end.py``: ending a room in one place (``end_room``), and the directory catching up with ended
  rooms (``DirectorySync``: retried with backoff while the database is away, reconciled from Redis).
- ``audit_names.py``: the audit name of every permission-table action.

It imports nothing from ``vIOP.api`` and no Starlette: the edges (``vIOP/api``, ``vIOP/cli``) call it.
"""
