"""Compliance policies (pure: no I/O): break-glass access, 42 CFR Part 2 consent, retention.

Storage lives in ``vIOP/storage/`` (``break_glass_sql.py``, ``consents_sql.py``, ``retention.py``); HTTP in
``vIOP/api/http_compliance.py``; the decisions are documented in ``docs/HIPAA.md``.
"""
