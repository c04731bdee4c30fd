"""Alembic environment, run programmatically by ``vIOP.storage.database.upgrade`` (no alembic.ini).

The caller passes an open SQLAlchemy connection in ``config.attributes["connection"]``; migrations run
inside the caller's transaction.
"""

from __future__ import annotations

from alembic import context

from vIOP.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through vIOP.storage.database.upgrade(url) or `python -m vIOP db upgrade`"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
