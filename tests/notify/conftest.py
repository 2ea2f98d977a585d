"""Fixtures shared by the notifier's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from huimin.db import Database


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()
