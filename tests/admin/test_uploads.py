"""The folder where uploaded lists wait for 确认导入."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from admin.uploads import MAX_UPLOAD, UploadError, UploadStore


def test_an_upload_is_claimed_once_by_its_owner(tmp_path: Path) -> None:
    store = UploadStore(tmp_path / "uploads")
    upload = store.save("applications", "session-a", "名单.CSV", b"a,b\n")
    assert upload.path.name == "upload.csv" and upload.filename == "名单.CSV"
    assert upload.path.read_bytes() == b"a,b\n"
    assert oct(upload.path.stat().st_mode)[-3:] == "600"
    assert store.get(upload.token, "applications", "session-b") is None
    assert store.get(upload.token, "payouts", "session-a") is None
    assert store.get("../../etc", "applications", "session-a") is None
    claimed = store.claim(upload.token, "applications", "session-a")
    assert claimed is not None and claimed.path.read_bytes() == b"a,b\n"
    assert store.claim(upload.token, "applications", "session-a") is None  # a double click
    store.discard(claimed.token)
    assert list((tmp_path / "uploads").iterdir()) == []


def test_old_uploads_are_swept(tmp_path: Path) -> None:
    store = UploadStore(tmp_path / "uploads")
    old = store.save("payouts", "s", "a.xlsx", b"PK")
    new = store.save("payouts", "s", "b.xlsx", b"PK")
    hour_ago = time.time() - 3700
    os.utime(tmp_path / "uploads" / old.token, (hour_ago, hour_ago))
    assert store.sweep() == 1
    assert store.get(old.token, "payouts", "s") is None
    assert store.get(new.token, "payouts", "s") is not None


@pytest.mark.parametrize(("name", "data", "message"), [
    ("a.pdf", b"x", "只能上传"), ("a.csv", b"", "空的"),
    ("a.csv", b"x" * (MAX_UPLOAD + 1), "太大")])
def test_what_cannot_be_kept(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    with pytest.raises(UploadError, match=message):
        UploadStore(tmp_path).save("applications", "s", name, data)


def test_a_claimed_upload_stays_for_its_import_job(tmp_path: Path) -> None:
    store = UploadStore(tmp_path / "uploads")
    upload = store.save("payouts", "s", "a.xlsx", b"PK")
    assert store.claimed_path(upload.token) is None  # not claimed yet
    claimed = store.claim(upload.token, "payouts", "s")
    assert claimed is not None
    assert store.claimed_path(claimed.token) == claimed.path
    assert store.claimed_path("../" + claimed.token) is None
    store.discard(claimed.token)
    assert store.claimed_path(claimed.token) is None
