"""The catalog: one SQLite row per asset, so a batch can be resumed and every output explained.

``OUTDIR/inverity.sqlite`` holds, for each input (keyed by its path relative to the walked root), the sha256 of
the bytes that were compressed, whether it is ``done`` or ``failed``, the output path (relative to the catalog's
directory, so the whole output folder can be moved), the stage, quality, byte count and the full decision record
as JSON.

No absolute path is stored: a record's ``output``, ``input_path`` and ``root`` are kept relative to the catalog's
directory (``../in/a.png``) and given back re-anchored (absolute) when read, so the catalog and the folders beside
it can move together. On close the writer checkpoints the write-ahead log and leaves rollback-journal mode, so no
``-wal``/``-shm`` files stay beside the deliverables. A catalog that cannot be opened or written raises a
:class:`CatalogError` naming the file and the cause in words (never a bare ``disk I/O error``).

Crash safety comes from ordering, not from transactions spanning files: the pipeline renames an output into place
*before* its row is written, so a crash leaves at worst an output without a row, which the next run redoes
(overwriting it atomically). A row therefore never points at a partial file. Only one process (the parent of a
batch) writes; WAL mode lets readers (``inverity inspect``, the report) read while it does.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> (d / "a.png").write_bytes(b"x")
1
>>> with Catalog(d / "inverity.sqlite") as cat:
...     cat.put({"input": "a.png", "input_sha256": "ab", "status": "done", "output": str(d / "a.png"),
...              "stage": "png", "quality": None, "bytes": 1})
...     cat.done("a.png", "ab"), cat.done("a.png", "cd")
(True, False)
"""
from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

from .errors import InverityError
from .record import DecisionRecord

__all__ = ["Catalog", "CatalogError", "CATALOG_NAME", "SCHEMA_VERSION", "find_catalog", "catalog_files"]

#: file name of the catalog inside an output directory
CATALOG_NAME = "inverity.sqlite"
#: bump (and add a migration in ``_migrate``) whenever the table layout changes
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    input        TEXT PRIMARY KEY,   -- path relative to the walked root, POSIX separators
    input_sha256 TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    policy       TEXT,               -- the policy as requested (resume only skips under the same one)
    output       TEXT,               -- relative to the catalog's directory; NULL when failed
    stage        TEXT,
    quality      INTEGER,
    bytes        INTEGER,
    error        TEXT,
    record       TEXT NOT NULL,      -- the decision record, JSON
    created_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS assets_output ON assets(output);
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
"""
#: record keys holding a path, stored relative to the catalog's directory
_PATH_KEYS = ("output", "input_path", "root")
#: SQLite's side files of a database (journal, write-ahead log, shared memory)
_SIDE_SUFFIXES = ("-journal", "-wal", "-shm")


class CatalogError(InverityError):
    """The catalog cannot be opened, read or written; the message names the file and the cause."""


def catalog_files(path: str | os.PathLike[str]) -> list[Path]:
    """The database file and the side files SQLite may keep beside it (so a walker never takes them as inputs)."""
    p = Path(path)
    return [p] + [p.with_name(p.name + s) for s in _SIDE_SUFFIXES]


def _cause(path: Path, exc: sqlite3.Error) -> str:
    """SQLite's terse message, with the likely cause in words where the file system can tell it."""
    msg = str(exc) or type(exc).__name__
    if path.is_dir():
        return "it is a directory, not a catalog file"
    for d in [path.parent, *path.parent.parents]:
        if d.exists():
            if not d.is_dir():
                return f"{d} is a file, not a directory"
            if not os.access(d, os.W_OK | os.X_OK) and not path.exists():
                return f"permission denied: cannot create files in {d}"
            break
    if path.exists() and not os.access(path, os.R_OK):
        return "permission denied: cannot read it"
    if "disk i/o" in msg.lower():
        return "disk I/O error (the disk may be full, read-only or failing)"
    if "readonly" in msg.lower() or "read-only" in msg.lower():
        return "it is read-only (permission denied or a read-only file system)"
    if "not a database" in msg.lower():
        return "it is not an inverity catalog (not an SQLite database)"
    return msg


class Catalog:
    """The SQLite catalog of one output directory.

    Parameters
    ----------
    path
        The database file (conventionally ``OUTDIR/inverity.sqlite``); created with its parent directory.
    readonly
        Open an existing catalog without creating or migrating it (for ``inspect``).

    Notes
    -----
    Upserts are idempotent: writing the same row twice leaves one row. Each ``put`` commits on its own, so a row
    is durable as soon as ``put`` returns.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.root = self.path.parent
        self.readonly = readonly
        try:
            if readonly:
                if not self.path.is_file():
                    raise FileNotFoundError(errno.ENOENT, "no catalog there", str(self.path))
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
                self._db.execute("SELECT COUNT(*) FROM assets").fetchone()   # fail here, not on first use
            else:
                try:
                    self.root.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise CatalogError(f"{self.path}: cannot create the catalog: "
                                       f"{_cause(self.path, sqlite3.Error(exc.strerror))}") from None
                self._db = sqlite3.connect(self.path)
                self._db.execute("PRAGMA journal_mode=WAL")
                # NORMAL is durable across application crashes in WAL mode; only an OS crash could drop the last
                # rows, and those outputs are simply redone.
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._migrate()
        except sqlite3.Error as exc:
            raise CatalogError(f"{self.path}: cannot open the catalog: {_cause(self.path, exc)}") from None
        self._db.row_factory = sqlite3.Row

    # -- lifecycle ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close; the writer first folds the write-ahead log into the database and leaves WAL mode, so no
        ``-wal``/``-shm`` file stays beside the outputs (best effort: a reader still open keeps them)."""
        if not self.readonly:
            try:
                self._db.execute("PRAGMA busy_timeout=0")    # a reader still open: give up at once, not in 5 s
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.Error:
                pass
        self._db.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._db:
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                self._db.execute("INSERT INTO schema_version(version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise CatalogError(f"{self.path}: catalog schema {row[0]} is newer than this inverity "
                                   f"understands ({SCHEMA_VERSION}); upgrade inverity")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    # -- paths ------------------------------------------------------------------------------------------------
    def _rel(self, output: str | os.PathLike[str] | None) -> str | None:
        """A path as stored: relative to the catalog's directory (``../`` allowed, so never absolute)."""
        if output is None:
            return None
        p = Path(output)
        try:
            return Path(os.path.relpath(p.resolve(), self.root.resolve())).as_posix()
        except ValueError:  # another drive (Windows): no relative path exists
            return p.as_posix()

    def _stored(self, record: dict[str, Any]) -> dict[str, Any]:
        rec = dict(record)
        for k in _PATH_KEYS:
            if isinstance(rec.get(k), str) and rec[k]:
                rec[k] = self._rel(rec[k])
        return rec

    def _anchored(self, record: dict[str, Any]) -> dict[str, Any]:
        """A stored record with its paths made absolute again (relative to where the catalog is now)."""
        for k in _PATH_KEYS:
            v = record.get(k)
            if isinstance(v, str) and v and not Path(v).is_absolute():
                record[k] = os.path.normpath(self.root.resolve() / v)
        return record

    # -- writing ----------------------------------------------------------------------------------------------
    def put(self, record: dict[str, Any]) -> None:
        """Insert or replace the row of ``record["input"]`` (a decision record, done or failed); a malformed
        record (:meth:`inverity.record.DecisionRecord.from_dict` refuses it) raises ``RecordError``."""
        status = record.get("status", "done")
        if status not in ("done", "failed"):
            raise ValueError(f"cannot store status {status!r}")
        DecisionRecord.from_dict(record)   # a malformed record is refused here (RecordError), never stored
        row = (
            # input_sha256 "" = an input that could not even be read (such a row is never "done")
            record["input"], record.get("input_sha256") or "", status,
            record.get("policy_id") or record.get("policy"),       # the policy as requested, for resume
            self._rel(record.get("output")) if status == "done" else None,
            record.get("stage"), record.get("quality"), record.get("bytes"), record.get("error"),
            json.dumps(self._stored(record), sort_keys=True), time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        try:
            self._put(row)
        except sqlite3.Error as exc:
            raise CatalogError(f"{self.path}: cannot write the row of {record['input']}: "
                               f"{_cause(self.path, exc)}") from None

    def _put(self, row: tuple[Any, ...]) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO assets(input, input_sha256, status, policy, output, stage, quality, bytes, error,"
                " record, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(input) DO UPDATE SET input_sha256=excluded.input_sha256, status=excluded.status,"
                " policy=excluded.policy, output=excluded.output, stage=excluded.stage, quality=excluded.quality,"
                " bytes=excluded.bytes, error=excluded.error, record=excluded.record,"
                " created_at=excluded.created_at",
                row,
            )

    # -- reading ----------------------------------------------------------------------------------------------
    def _row(self, r: sqlite3.Row | None) -> dict[str, Any] | None:
        if r is None:
            return None
        d = dict(r)
        d["record"] = self._anchored(json.loads(d["record"]))
        return d

    def get(self, input_rel: str) -> dict[str, Any] | None:
        """The row of one input (columns plus ``record`` parsed), or ``None``."""
        return self._row(self._db.execute("SELECT * FROM assets WHERE input = ?", (input_rel,)).fetchone())

    def done(self, input_rel: str, sha256: str, policy: str | None = None) -> bool:
        """True when this input, with these exact bytes (and this policy, if given), was compressed and its
        output is still on disk — i.e. a resumed run may skip it."""
        row = self.get(input_rel)
        if row is None or row["status"] != "done" or row["input_sha256"] != sha256:
            return False
        if policy is not None and row["policy"] != policy:
            return False
        return row["output"] is not None and (self.root / row["output"]).is_file()

    def records(self) -> list[dict[str, Any]]:
        """Every decision record, ordered by input path."""
        return [self._anchored(json.loads(r[0]))
                for r in self._db.execute("SELECT record FROM assets ORDER BY input")]

    def rows(self) -> Iterator[dict[str, Any]]:
        for r in self._db.execute("SELECT * FROM assets ORDER BY input"):
            row = self._row(r)
            assert row is not None
            yield row

    def lookup_output(self, output_path: str | os.PathLike[str]) -> dict[str, Any] | None:
        """The decision record of the asset whose output is ``output_path`` (any path to the file), or ``None``."""
        rel = self._rel(output_path)
        r = self._db.execute("SELECT record FROM assets WHERE output = ?", (rel,)).fetchone()
        return None if r is None else self._anchored(json.loads(r[0]))

    def lookup_sha256(self, sha256: str) -> dict[str, Any] | None:
        """The record whose output had these exact bytes (``output_sha256``): finds an output that was moved or
        renamed. The newest such row wins."""
        r = self._db.execute("SELECT record FROM assets WHERE status = 'done' AND "
                             "json_extract(record, '$.output_sha256') = ? ORDER BY created_at DESC",
                             (sha256,)).fetchone()
        return None if r is None else self._anchored(json.loads(r[0]))

    def outputs(self) -> set[Path]:
        """The resolved paths of every output the catalog knows (the walker never takes them as inputs)."""
        root = self.root.resolve()
        return {Path(os.path.normpath(root / r[0]))
                for r in self._db.execute("SELECT output FROM assets WHERE output IS NOT NULL")}

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM assets").fetchone()[0])


def find_catalog(path: str | os.PathLike[str]) -> Path | None:
    """The catalog next to or above ``path`` (the nearest ``inverity.sqlite`` in its directory or a parent)."""
    p = Path(path).resolve()
    for d in ([p] if p.is_dir() else []) + list(p.parents):
        cand = d / CATALOG_NAME
        if cand.is_file():
            return cand
    return None
