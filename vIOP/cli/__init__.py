"""The command line (``python -m vIOP ...``), the top floor beside :mod:`vIOP.app`.

``main.py`` parses and dispatches; each other module contributes its subcommands: ``users.py`` (accounts),
``storage.py`` (``db``, ``keys``, ``audit``, ``clients``), ``attendance.py`` (``attendance export``) and
``compliance.py`` (``consent``, ``retention``, ``audit review|sign-off``). Commands wire the stores they need
themselves (like ``app.py`` does for the server) and write every audit row through
:meth:`vIOP.storage.audit_outbox.AuditOutbox.record_operator`, which names the operator.
"""
