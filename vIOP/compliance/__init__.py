"""Compliance policies (pure: no I/O): break-glass access, 42 CFR Part 2 consent, retention, and the audit
trail's port (``audit.py``: ``AuditRecorder``, implemented by ``vIOP.storage.audit_outbox.AuditOutbox``).

Storage lives in ``vIOP/storage/`` (``break_glass_sql.py``, ``consents_sql.py``, ``retention.py``); HTTP in
``vIOP/api/http_compliance.py``; the decisions are documented in ``docs/HIPAA.md``.
"""
