"""The room domain: rooms, participants, the waiting room, presence views and the attendance ledger.

Pure: nothing here imports Redis, SQL, aiortc or Starlette. Stores and the event bus are reached through
the protocols in :mod:`vIOP.rooms.ports`.
"""
