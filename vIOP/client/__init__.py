"""The Python client, for tests, benchmarks and operators: signaling (``signaling.py``), media
(``media.py``), the two as one participant (``session.py``) and ``python -m vIOP.client``.
"""
