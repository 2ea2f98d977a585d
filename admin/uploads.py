"""Uploaded lists waiting for staff to confirm them.

An application or payout list is checked and shown before anything is saved. Until
staff press 确认导入 (or 取消) the file waits in a folder of its own under a temporary
directory, named by a random token. The token belongs to the sign-in session that
uploaded it: another session (even of the same person) cannot confirm it. A confirmed
file is kept while its import job runs (``admin.jobs``) and deleted when the job ends; a
cancelled one at once; and any file older than an hour (since upload, or since it was
confirmed) is deleted the next time anyone uploads.

The folder is on the admin process's machine; when several admin processes run on
different machines, set HUIMIN_ADMIN_UPLOAD_DIR to a shared folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from huimin.registry.importer import MAX_FILE_BYTES

log = logging.getLogger(__name__)

TTL_SECONDS = 3600
SUFFIXES = (".csv", ".xlsx")
MAX_UPLOAD = MAX_FILE_BYTES  # a county's 100,000-row list is about 13 MB as CSV
GONE = ("找不到要导入的文件：可能已经导入过、取消了，或者上传超过1小时已经作废。"
        "请重新上传。")  # shown when a confirmation finds no waiting upload
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}(\.claimed)?")


class UploadError(ValueError):
    """The file cannot be kept (type, size); the message is for staff."""


@dataclass(frozen=True)
class Upload:
    token: str
    kind: str  # "applications" or "payouts"
    filename: str  # as the user named it (shown, never used as a path)
    path: Path  # the stored copy, named upload.csv or upload.xlsx


def default_root() -> Path:
    return Path(tempfile.gettempdir()) / "huimin-admin-uploads"


class UploadStore:
    def __init__(self, root: Path | None = None, ttl: float = TTL_SECONDS) -> None:
        self.root = root or default_root()
        self.ttl = ttl

    def save(self, kind: str, owner: str, filename: str, data: bytes) -> Upload:
        """Keep ``data`` for ``owner`` (a session's token hash); returns the upload."""
        suffix = Path(filename).suffix.lower()
        if suffix not in SUFFIXES:
            raise UploadError("只能上传 .csv 或 .xlsx 文件（Excel 请另存为 .xlsx）。")
        if not data:
            raise UploadError("文件是空的。")
        if len(data) > MAX_UPLOAD:
            raise UploadError(f"文件太大了（最大{MAX_UPLOAD // 2**20}MB），请分成几个文件上传。")
        self.sweep()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = secrets.token_urlsafe(24)
        folder = self.root / token
        folder.mkdir(mode=0o700)
        path = folder / f"upload{suffix}"
        path.write_bytes(data)
        os.chmod(path, 0o600)
        now = time.time()
        meta = {"kind": kind, "owner": owner, "filename": Path(filename).name[:200],
                "created": now}
        (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False),
                                          encoding="utf-8")
        os.utime(folder, (now, now))  # the sweep reads ages by this process's clock
        return Upload(token, kind, meta["filename"], path)

    def get(self, token: str, kind: str, owner: str) -> Upload | None:
        """The upload, if it exists, is of ``kind``, belongs to ``owner`` and is not
        older than the time limit."""
        folder = self._folder(token)
        if folder is None:
            return None
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if meta.get("kind") != kind or meta.get("owner") != owner:
            return None
        if time.time() - float(meta.get("created", 0)) > self.ttl:
            self.discard(token)
            return None
        found = [folder / f"upload{s}" for s in SUFFIXES if (folder / f"upload{s}").exists()]
        if not found:
            return None
        return Upload(token, kind, str(meta.get("filename", "")), found[0])

    def claim(self, token: str, kind: str, owner: str) -> Upload | None:
        """Take the upload for importing it, once: a second confirm of the same file (a
        double click, a second tab) finds nothing. Discard it when done."""
        found = self.get(token, kind, owner)
        if found is None:
            return None
        claimed = self.root / f"{token}.claimed"
        try:
            os.rename(self.root / token, claimed)
            # The hour starts again (the import job reads it from here), by this
            # process's clock, which the sweep compares with, not the file system's.
            now = time.time()
            os.utime(claimed, (now, now))
        except OSError:  # claimed by the other request a moment ago
            return None
        return Upload(f"{token}.claimed", kind, found.filename, claimed / found.path.name)

    def claimed_path(self, token: str) -> Path | None:
        """The file of a claimed upload (an import job's), while it is kept."""
        if not token.endswith(".claimed"):
            return None
        folder = self._folder(token)
        if folder is None:
            return None
        for suffix in SUFFIXES:
            if (folder / f"upload{suffix}").is_file():
                return folder / f"upload{suffix}"
        return None

    def discard(self, token: str) -> None:
        folder = self._folder(token)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def sweep(self) -> int:
        """Delete uploads older than the time limit; returns how many."""
        if not self.root.is_dir():
            return 0
        removed = 0
        cutoff = time.time() - self.ttl
        for folder in self.root.iterdir():
            try:
                if folder.is_dir() and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
            except OSError:  # another process removed it first
                continue
        if removed:
            log.info("removed %d expired uploads", removed)
        return removed

    def _folder(self, token: str) -> Path | None:
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            return None
        folder = self.root / token
        return folder if folder.is_dir() else None
