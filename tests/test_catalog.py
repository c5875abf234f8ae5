"""The SQLite catalog: idempotent upserts, resume decisions, output lookup, schema version, concurrent reads."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from inverity.catalog import CATALOG_NAME, SCHEMA_VERSION, Catalog, CatalogError, find_catalog


def _rec(inp: str, out: Path | None, sha: str = "s1", status: str = "done", **kw: object) -> dict:
    return {"input": inp, "input_sha256": sha, "status": status, "output": None if out is None else str(out),
            "stage": "png", "quality": None, "bytes": 3, "policy": "auto", **kw}


def test_put_is_an_idempotent_upsert(tmp_path: Path) -> None:
    out = tmp_path / "a.png"
    out.write_bytes(b"abc")
    with Catalog(tmp_path / CATALOG_NAME) as cat:
        cat.put(_rec("a.png", out))
        cat.put(_rec("a.png", out))
        assert len(cat) == 1
        row = cat.get("a.png")
        assert row is not None and row["output"] == "a.png" and row["record"]["stage"] == "png"
        cat.put(_rec("a.png", out, sha="s2", stage="jpegls"))
        assert len(cat) == 1 and cat.get("a.png")["stage"] == "jpegls"
        assert cat.records() == [cat.get("a.png")["record"]]
        assert cat.get("nope") is None


def test_done_needs_same_sha_policy_status_and_the_output_on_disk(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "a.avif"
    out.parent.mkdir()
    out.write_bytes(b"x")
    with Catalog(tmp_path / CATALOG_NAME) as cat:
        cat.put(_rec("sub/a.png", out))
        assert cat.done("sub/a.png", "s1") and cat.done("sub/a.png", "s1", "auto")
        assert not cat.done("sub/a.png", "other-sha")
        assert not cat.done("sub/a.png", "s1", "archive")
        cat.put(_rec("sub/a.png", out, policy="web", policy_id="web@0123"))      # a TOML policy: keyed by id
        assert cat.done("sub/a.png", "s1", "web@0123") and not cat.done("sub/a.png", "s1", "web")
        out.unlink()
        assert not cat.done("sub/a.png", "s1")          # output deleted by the user: redo it
        cat.put(_rec("b.png", None, status="failed", error="b.png: truncated"))
        assert not cat.done("b.png", "s1")
        row = cat.get("b.png")
        assert row["status"] == "failed" and row["output"] is None and row["error"] == "b.png: truncated"
        with pytest.raises(ValueError):
            cat.put(_rec("c.png", None, status="skipped"))


def test_lookup_output_accepts_any_spelling_of_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "o" / "x" / "a.jxl"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"x")
    with Catalog(tmp_path / "o" / CATALOG_NAME) as cat:
        cat.put(_rec("x/a.png", out))
    monkeypatch.chdir(tmp_path)
    with Catalog(Path("o") / CATALOG_NAME, readonly=True) as cat:
        assert cat.lookup_output("o/x/a.jxl")["input"] == "x/a.png"
        assert cat.lookup_output(out)["input"] == "x/a.png"
        assert cat.lookup_output("o/x/missing.jxl") is None
    assert find_catalog(out) == (tmp_path / "o" / CATALOG_NAME).resolve()
    assert find_catalog(tmp_path / "o") == (tmp_path / "o" / CATALOG_NAME).resolve()
    assert find_catalog(tmp_path) is None


def test_schema_version_and_wal(tmp_path: Path) -> None:
    path = tmp_path / CATALOG_NAME
    with Catalog(path) as cat:
        assert cat.schema_version == SCHEMA_VERSION
    with Catalog(path) as cat:                            # reopening does not add a second version row
        assert cat.schema_version == SCHEMA_VERSION
    db = sqlite3.connect(path)
    # WAL while a batch writes; rolled back to a plain journal on close, so no -wal/-shm stays beside the outputs
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert db.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1
    db.execute("UPDATE schema_version SET version = 999")
    db.commit()
    db.close()
    with pytest.raises(CatalogError, match="newer"):
        Catalog(path)


def test_a_reader_sees_rows_while_the_writer_is_open(tmp_path: Path) -> None:
    out = tmp_path / "a.png"
    out.write_bytes(b"x")
    with Catalog(tmp_path / CATALOG_NAME) as writer:
        writer.put(_rec("a.png", out))
        with Catalog(tmp_path / CATALOG_NAME, readonly=True) as reader:
            assert reader.done("a.png", "s1")
        with pytest.raises(FileNotFoundError):
            Catalog(tmp_path / "missing.sqlite", readonly=True)
