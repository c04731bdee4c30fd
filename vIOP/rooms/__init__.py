"""The room domain: rooms, participants, the waiting room, presence views and the attendance ledger rules;
``RoomService`` (``service.py``) runs the use cases over the store protocols in :mod:`vIOP.rooms.ports`.

Pure: nothing here imports Redis, SQL, aiortc or Starlette (in-memory twins of the ports, for tests, are in
``memory.py``).
"""
