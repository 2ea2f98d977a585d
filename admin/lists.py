"""What the previews of uploaded lists (applications, payouts) share: running the
importer's row checks off the event loop, and finding the people a list names."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from huimin.personal import Vault
from huimin.registry.importer import CheckedList, RowErrors, check_list
from huimin.registry.models import Beneficiary

CHUNK = 500  # values per IN (...) list
PREVIEW_ROWS = 300  # rows listed on a preview page (all are counted)
PREVIEW_ERRORS = 500
Record = TypeVar("Record")
Row = TypeVar("Row")


@dataclass(kw_only=True)
class ListPreview(RowErrors, Generic[Row]):
    """An uploaded list checked and compared with what is stored; nothing saved yet. Bad
    rows are kept as an import keeps them (``RowErrors``: the first ones, then a count)."""

    filename: str
    rows: list[Row] = field(default_factory=list)  # new and changed rows, in order
    file_error: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"new": 0, "changed": 0,
                                                            "same": 0})

    @property
    def ok(self) -> bool:
        """Something can be imported."""
        return self.file_error is None and (self.counts["new"] + self.counts["changed"]) > 0

    @property
    def listed(self) -> list[Row]:
        return self.rows[:PREVIEW_ROWS]

    @property
    def shown_errors(self) -> list[tuple[int, str]]:
        return self.errors[:PREVIEW_ERRORS]


def chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start:start + CHUNK]


async def check_file(checked_rows: Callable[[Path], Iterator[tuple[int, Record | str]]],
                     path: Path) -> CheckedList[Record]:
    """The importer's checks (``checked_rows``) without saving: good records and row
    errors (the first MAX_KEPT_ERRORS, and how many more). Reading a large XLSX takes a
    while, so not on the event loop (the admin may share its process with the bot).
    Raises the importer's ImportFileError."""
    return await asyncio.to_thread(lambda: check_list(checked_rows(path)))


async def people_by_id_number(session: AsyncSession, vault: Vault,
                              id_numbers: Iterable[str]) -> dict[str, Beneficiary]:
    """The registered people among these ID numbers, keyed by ID number."""
    # Every hash of each number: while keys rotate a person may be under either.
    hashes = {h: number for number in set(id_numbers) for h in vault.lookup_hashes(number)}
    found: dict[str, Beneficiary] = {}
    for chunk in chunks(sorted(hashes)):
        for person in (await session.scalars(
                select(Beneficiary).where(Beneficiary.id_hash.in_(chunk)))).all():
            found[hashes[person.id_hash]] = person
    return found
