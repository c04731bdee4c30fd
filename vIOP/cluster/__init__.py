"""Scale-out policy: nodes (serving processes), where a room's media is placed, and the room lease that
makes one node its only media holder (docs/SCALING.md).

Pure like :mod:`vIOP.rooms`: the records and decisions in ``nodes.py`` and ``leases.py``, the ports in
``ports.py`` (Redis adapters: ``vIOP.storage.redis_cluster``), in-memory twins in ``memory.py`` and the one
node's view of it all in ``membership.py``. Time comes from an injected clock.
"""
