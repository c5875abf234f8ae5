"""Batches: walk the inputs, resume from the catalog, run :func:`inverity.pipeline.compress_one` per asset on an
engine, and write each result's catalog row (the parent process is the catalog's only writer).

Part of :mod:`inverity.pipeline` (which re-exports :func:`compress`); kept apart so the orchestrator of one asset
stays small::

    inputs ─► collect_assets ─► catalog: done with these bytes under this policy? ── yes ─► record "skipped"
                                      │ no
                                      ▼
              engine.run(_work) ─► compress_one per asset (worker) ─► Result ─► _settle: catalog row
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ._walk import collect_assets
from .errors import InputError, InverityError, error_line, safe_text
from .outputs import check_output, check_output_dir, same_file, sha256_file
from .record import DecisionRecord, jsonable, package_version

if TYPE_CHECKING:
    from .catalog import Catalog
    from .pipeline import Asset, PolicySpec, Result, Toolkit

__all__ = ["compress", "policy_id"]


def _policy_name(policy: PolicySpec) -> str:
    return os.fspath(policy) if isinstance(policy, (str, os.PathLike)) else policy.name


def _is_spec(policy: PolicySpec) -> bool:
    return isinstance(policy, (str, os.PathLike))


def policy_id(spec: PolicySpec) -> str:
    """A stable identity of a policy *as requested*, stored in the catalog so resume only skips assets done
    under the same policy: the built-in name, or the name plus a digest of the TOML file / Policy value."""
    if isinstance(spec, (str, os.PathLike)):
        p = Path(spec)
        if p.suffix == ".toml" and p.is_file():
            return f"{p.stem}@{hashlib.sha256(p.read_bytes()).hexdigest()[:16]}"
        return os.fspath(spec)
    d = jsonable(dataclasses.asdict(spec))
    return f"{spec.name}@{hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class _Task:
    asset: Asset
    policy: PolicySpec
    outdir: str
    toolkit: Toolkit | None

    @property
    def wants_gpu(self) -> bool:
        """The policy's ``uses_gpu`` (its stages may run on a GPU: the Ray engine then asks for a GPU fraction)."""
        return _uses_gpu(self.policy, self.toolkit)


def _uses_gpu(policy: PolicySpec, toolkit: Toolkit | None) -> bool:
    """A policy's ``uses_gpu`` (a name or TOML path is read first); False when it cannot be read here (the worker
    then fails the asset with the policy's own message)."""
    if isinstance(policy, (str, os.PathLike)):
        from .pipeline import Toolkit

        try:
            policy = (toolkit or Toolkit.default()).get_policy(policy)
        except Exception:  # noqa: BLE001 - reported by the worker, not by the engine's placement
            return False
    return bool(policy.uses_gpu)


def _work(task: _Task) -> Result:
    """Engine function (runs in a worker): compress one asset; every failure becomes a failed Result."""
    from .pipeline import Result, compress_one

    a = task.asset
    try:
        return compress_one(a.path, task.policy, outdir=task.outdir, asset=a, toolkit=task.toolkit)
    except Exception as exc:  # noqa: BLE001 - one asset's failure must not end the batch
        msg = error_line(exc)
        if not isinstance(exc, InverityError) and safe_text(a.path) not in msg:
            msg = f"{safe_text(a.path)}: {msg}"       # name the user's file, and the cause in words
        partial = getattr(exc, "record", None)    # compress_one's record so far (InverityError only)
        # nothing was read (or a bug before the record existed): the record says what is known
        record = DecisionRecord.from_dict(partial) if partial is not None else \
            DecisionRecord(input=a.input, input_sha256=sha256_file(a.path), version=package_version())
        record.status, record.error, record.output, record.bytes = "failed", msg, None, None
        record.policy_id = record.policy_id or policy_id(task.policy)
        record.policy = record.policy or _policy_name(task.policy)
        return Result(a.input, "failed", record.to_dict(), None, msg)


def _sweep_partials(outdir: Path) -> None:
    """Remove temporaries a killed run left behind (``_atomic`` writes ``.<name>.<random>.part`` then renames).
    Safe because one batch at a time writes into an output directory (the catalog has a single writer)."""
    for p in outdir.rglob(".*.part"):
        try:
            p.unlink()
        except OSError:
            pass


def compress(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], outdir: str | os.PathLike[str],
             policy: PolicySpec = "auto", jobs: int | None = None, engine: str = "local",
             on_record: Callable[[dict[str, Any]], None] | None = None, *,
             on_start: Callable[[int], None] | None = None, on_note: Callable[[str], None] | None = None,
             toolkit: Toolkit | None = None, catalog: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Compress files and directories into ``outdir`` with routing, verification and resume.

    Parameters
    ----------
    inputs
        Files and/or directories (walked; see :func:`collect_assets`). A path that does not exist is an error
        before anything is created.
    outdir
        Output directory; outputs mirror the inputs' relative paths.
    policy
        Built-in policy name, TOML file, or ``Policy``.
    jobs
        Worker processes for the local engine (default: the CPU count). Results do not depend on it.
    engine
        ``local`` (process pool) or ``ray``.
    on_record
        Called in this process with each decision record as it arrives (including resumed ones, whose
        ``status`` is ``skipped``) — for progress bars and JSONL output.
    on_start
        Called once with the number of assets before work starts.
    on_note
        Called with human-readable notes (skipped non-image files).
    toolkit
        Injected modules for tests (must be picklable for ``jobs > 1``).
    catalog
        The catalog file (default ``outdir/inverity.sqlite``).

    Returns
    -------
    list of dict
        One decision record (:meth:`DecisionRecord.to_dict`) per asset, in input order; ``status`` is ``done``,
        ``failed`` or ``skipped``. Failures do not raise: check ``status`` (the CLI exits 2 if any asset failed).
        A failed re-run of an asset that was done before keeps the previous output and its catalog row; its
        record says so (``kept_previous``). No inputs found: ``[]`` and nothing is created.
    """
    from .catalog import CATALOG_NAME, Catalog, catalog_files
    from .engine import get_engine
    from .pipeline import Toolkit

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    missing = [safe_text(os.fspath(p)) for p in inputs if not os.path.lexists(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{missing[0]}: no such file or directory{more}; nothing was compressed")
    outdir_p = check_output_dir(outdir)
    cat_path = Path(catalog) if catalog is not None else outdir_p / CATALOG_NAME
    check_output(cat_path, [])
    pid = policy_id(policy)
    if _is_spec(policy):
        # fail fast, once, on a misspelt policy or a malformed TOML file, not once per asset in the workers
        (toolkit or Toolkit.default()).get_policy(policy)  # type: ignore[arg-type]
    eng = get_engine(engine)
    exclude: list[Path] = catalog_files(cat_path)
    if cat_path.is_file():   # the outputs this catalog knows are never inputs (compress d -o d, twice)
        with Catalog(cat_path, readonly=True) as known:
            exclude.extend(known.outputs())
    assets = collect_assets(inputs, outdir_p, on_note=on_note, exclude=exclude)
    if on_start is not None:
        on_start(len(assets))
    if not assets:
        return []

    results: dict[str, dict[str, Any]] = {}
    with Catalog(cat_path) as cat:
        _sweep_partials(outdir_p)
        todo: list[_Task] = []
        for a in assets:
            sha = sha256_file(a.path)
            if sha is not None and cat.done(a.input, sha, pid):
                row = cat.get(a.input)
                assert row is not None
                rec = dict(row["record"], status="skipped")
                results[a.input] = rec
                if on_record is not None:
                    on_record(rec)
            else:
                todo.append(_Task(a, policy, str(outdir_p), toolkit))
        inputs_of_batch = [a.path for a in assets]
        from functools import partial

        from ._warm import warm   # once per worker: imports and models (torch only if a task may be learned)

        warm_up = None if toolkit is not None else partial(warm, any(t.wants_gpu for t in todo))
        for res in eng.run(todo, _work, jobs, warm=warm_up):
            rec = res.record
            _settle(cat, rec, inputs_of_batch)
            results[res.input] = rec
            if on_record is not None:
                on_record(rec)
    return [results[a.input] for a in assets if a.input in results]


def _settle(cat: Catalog, rec: dict[str, Any], inputs: list[str]) -> None:
    """Write one result's catalog row (the output is already renamed into place by the worker).

    A failure never costs the last good output: when the asset was done before and that output is still on
    disk, the row and the file stay as they were and the failed record says so (``kept_previous``). A success
    that renamed the output (another stage, another extension) removes the previous file — never an input."""
    previous = cat.get(rec["input"])
    prev_out = previous.get("output") if previous and previous.get("status") == "done" else None
    prev_file = cat.root / prev_out if prev_out else None
    if rec.get("status") == "failed":
        if prev_file is not None and prev_file.is_file():
            assert previous is not None
            when = previous.get("created_at") or "an earlier run"
            rec["kept_previous"] = {"output": str(prev_file), "created_at": when, "stage": previous.get("stage")}
            rec["error"] = f"{rec.get('error')}; kept previous output {prev_out} from {when}"
            return
        cat.put(rec)
        return
    cat.put(rec)
    if prev_file is not None and not same_file(prev_file, rec.get("output") or "") and prev_file.is_file() \
            and not any(same_file(prev_file, p) for p in inputs):
        prev_file.unlink()   # e.g. the asset was redone under another policy and changed extension
