from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.outbox.backends import Backend, PostgresBackend, SQLiteBackend, postgres_or_fail


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each outbox test runs on SQLite and on PostgreSQL (its own schema, dropped after)."""
    made: Backend
    if request.param == "sqlite":
        made = SQLiteBackend(tmp_path)
    else:
        made = PostgresBackend(await postgres_or_fail())
    await made.setup()
    yield made
    await made.teardown()
