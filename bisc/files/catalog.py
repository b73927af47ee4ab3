"""The file catalog on disk: what we share, download and have, in sqlite.

One row per file we hold some of. A download's verified chunks are a
bitfield blob (LSB-first, as on the wire), written after the part file's
data was flushed to disk, so a chunk recorded here is on disk: after a
crash, a download resumes from exactly these chunks.

WAL mode with synchronous=NORMAL: commits are cheap and survive a process
crash; a power cut may lose the last few commits, which only means those
chunks are fetched again.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bisc.errors import BiscError
from bisc.proto import transfer as tp

SHARED = "shared"
DOWNLOADING = "downloading"
COMPLETE = "complete"
STATES = (SHARED, DOWNLOADING, COMPLETE)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    file_hash BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('shared', 'downloading', 'complete')),
    path TEXT,            -- shared: the source; downloading: the part file; complete: the file
    mtime_ns INTEGER,     -- shared/complete: when hashed, to notice changes
    hashes BLOB,          -- the chunk hash list, once verified against file_hash
    have BLOB,            -- downloading: bitfield of chunks verified and on disk
    active INTEGER NOT NULL DEFAULT 1  -- downloading: resume at start-up
)
"""


class CatalogError(BiscError):
    """The catalog database cannot be opened or written."""


@dataclass(frozen=True)
class FileRow:
    file_hash: bytes
    name: str
    size: int
    chunk_count: int
    state: str
    path: str | None = None
    mtime_ns: int | None = None
    hashes: bytes | None = None
    have: bytes | None = None
    active: bool = True

    def verified_mask(self) -> int:
        """A download's recorded chunks as a mask (none without a verified hash list)."""
        if self.have is None or self.hashes is None or len(self.have) != tp.bitfield_size(self.chunk_count):
            return 0
        return tp.bits_to_mask(self.have) & ((1 << self.chunk_count) - 1)


_COLUMNS = "file_hash, name, size, chunk_count, state, path, mtime_ns, hashes, have, active"


class Catalog:
    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.db_path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise CatalogError(f"cannot open the file catalog {self.db_path}: {exc}") from None
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise CatalogError("the file catalog is not open")
        return self._db

    def rows(self) -> list[FileRow]:
        cursor = self.db.execute(f"SELECT {_COLUMNS} FROM files")
        return [_row(values) for values in cursor.fetchall()]

    def get(self, file_hash: bytes) -> FileRow | None:
        values = self.db.execute(f"SELECT {_COLUMNS} FROM files WHERE file_hash = ?", (file_hash,)).fetchone()
        return None if values is None else _row(values)

    def put(self, row: FileRow) -> None:
        self._write(
            f"INSERT OR REPLACE INTO files ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.file_hash,
                row.name,
                row.size,
                row.chunk_count,
                row.state,
                row.path,
                row.mtime_ns,
                row.hashes,
                row.have,
                int(row.active),
            ),
        )

    def set_have(self, file_hash: bytes, have: bytes) -> None:
        self._write("UPDATE files SET have = ? WHERE file_hash = ?", (have, file_hash))

    def set_active(self, file_hash: bytes, active: bool) -> None:
        self._write("UPDATE files SET active = ? WHERE file_hash = ?", (int(active), file_hash))

    def delete(self, file_hash: bytes) -> None:
        self._write("DELETE FROM files WHERE file_hash = ?", (file_hash,))

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        try:
            self.db.execute(sql, params)
        except sqlite3.Error as exc:  # e.g. disk full: say so, the caller decides
            raise CatalogError(f"cannot write the file catalog {self.db_path}: {exc}") from None


def _row(values: tuple[object, ...]) -> FileRow:
    file_hash, name, size, count, state, path, mtime_ns, hashes, have, active = values
    assert isinstance(file_hash, bytes) and isinstance(name, str) and isinstance(state, str)
    assert isinstance(size, int) and isinstance(count, int) and isinstance(active, int)
    return FileRow(
        file_hash,
        name,
        size,
        count,
        state,
        path if isinstance(path, str) else None,
        mtime_ns if isinstance(mtime_ns, int) else None,
        hashes if isinstance(hashes, bytes) else None,
        have if isinstance(have, bytes) else None,
        bool(active),
    )
