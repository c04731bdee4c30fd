"""Signed events to the EHR (issue 16, docs/PROGRAM.md "Webhooks"): event types and their id-only
payloads, the port that emits them, the subscription URL policy and the retry schedule. Pure: the outbox
is in ``vIOP.storage.webhooks_sql``, the delivery loop in ``vIOP.session.webhooks``."""
