"""CLI commands of the routed pipeline: ``compress``, ``inspect`` and ``demo``.

Thin wrappers over :mod:`inverity.pipeline` and :mod:`inverity.catalog`; heavy imports stay inside the commands
so ``inverity --help`` is fast.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from . import app

__all__: list[str] = []


def _stdout() -> Any:
    from rich.console import Console

    # explicit file: typer/pytest may swap sys.stdout after import; soft_wrap keeps JSON-ish cells whole
    return Console(file=sys.stdout, width=max(100, Console(file=sys.stdout).width))


def _run_batch(inputs: list[Path], outdir: Path, policy: str, jobs: int | None, engine: str, json_out: bool,
               *, label: str = "compress", catalog: Path | None = None) -> list[dict[str, Any]]:
    """Run ``pipeline.compress`` with a progress bar on stderr and (``json_out``) JSONL on stdout."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..pipeline import compress

    err = Console(file=sys.stderr)
    progress = Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.description}"), console=err, transient=True,
                        disable=not err.is_terminal)
    task = progress.add_task("", total=None)

    def on_start(n: int) -> None:
        progress.update(task, total=n)

    def on_record(rec: dict[str, Any]) -> None:
        progress.update(task, advance=1, description=str(rec.get("input", "")))
        if json_out:
            sys.stdout.write(json.dumps(rec, sort_keys=True) + "\n")
            sys.stdout.flush()

    def on_note(msg: str) -> None:
        progress.console.print(f"inverity: note: {msg}", markup=False, highlight=False, soft_wrap=True)

    with progress:
        return compress(inputs, outdir, policy=policy, jobs=jobs, engine=engine, on_record=on_record,
                        on_start=on_start, on_note=on_note, catalog=catalog)


def _report_failures(records: list[dict[str, Any]]) -> int:
    failed = [r for r in records if r.get("status") == "failed"]
    for r in failed:
        typer.echo(f"inverity: error: {r.get('error') or r.get('input')}", err=True)
    return 2 if failed else 0


@app.command("compress")
def compress_cmd(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or directories (walked; non-images skipped)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output directory (catalog: OUTDIR/inverity.sqlite)."),
    policy: str = typer.Option("auto", "--policy", "-p",
                               help="auto|archive|diagnostic|delivery|controlled, a shipped policy by name "
                                    "(web, radiology-near-lossless, gpu-controlled, archive-png) or a FILE.toml."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Worker processes (default: CPU count)."),
    engine: str = typer.Option("local", "--engine", help="local (process pool) or ray."),
    json_out: bool = typer.Option(False, "--json", help="Print one decision record per line (JSONL) on stdout."),
    catalog: Optional[Path] = typer.Option(None, "--catalog",
                                           help="Catalog file (default OUTDIR/inverity.sqlite), e.g. to keep it "
                                                "out of the folder of deliverables."),
) -> None:
    """Route each image to the stage that fits it, verify the reconstruction, write one output per input.

    Re-running skips assets already done (same bytes, same policy). A failed re-run keeps the previous output.
    Exit 2 if any asset failed, or if no image was found.
    """
    records = _run_batch(inputs, output, policy, jobs, engine, json_out, catalog=catalog)
    if not records:
        typer.echo(f"inverity: error: no images found in {', '.join(str(p) for p in inputs)} "
                   "(nothing to compress; nothing was written)", err=True)
        raise SystemExit(2)
    cat_path = catalog if catalog is not None else output / "inverity.sqlite"
    if not json_out:
        from ._summary import summary_lines, terminal_width

        con = _stdout()
        for line in summary_lines(records, width=terminal_width(), catalog=str(cat_path)):
            con.print(line, markup=False, highlight=False, soft_wrap=True)
    code = _report_failures(records)
    if code:
        # SystemExit, not typer.Exit: with standalone_mode=False click *returns* an Exit's code, which
        # cli.main() currently discards; SystemExit reaches main()'s handler and becomes the exit status.
        raise SystemExit(code)


def _record_for(path: Path, catalog: Path | None = None) -> tuple[dict[str, Any], str]:
    """The decision record of an output: from ``catalog`` (or the nearest one) by its path, else by the sha256 of
    its content (a moved or renamed output), else from its ``.inv`` header."""
    import hashlib

    from ..catalog import Catalog, find_catalog
    from ..errors import InputError

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    cat_path = catalog if catalog is not None else find_catalog(path.parent)
    data = path.read_bytes()
    if cat_path is not None:
        with Catalog(cat_path, readonly=True) as cat:
            rec = cat.lookup_output(path)
            how = f"catalog {cat_path}"
            if rec is None:
                rec = cat.lookup_sha256(hashlib.sha256(data).hexdigest())
                how = f"catalog {cat_path}, matched by content (sha256): the file was moved or renamed"
        if rec is not None:
            return rec, how
    from ..formats import sniff

    if sniff(data[:512]) == "inv":
        from ..container import unpack

        header, payload = unpack(data)
        return {"output": str(path), "bytes": len(data), "payload_bytes": len(payload), "container": "inv",
                "stage": header.get("codec_id"), "quality": header.get("quality"), "header": header}, \
            "the .inv container header (no catalog entry)"
    where = f"not in catalog {cat_path}" if cat_path else "no catalog next to or above it (give --catalog PATH)"
    raise InputError(f"{path}: no decision record ({where}; not an .inv file)")


@app.command("inspect")
def inspect_cmd(
    output: Path = typer.Argument(..., help="An output file written by 'inverity compress'."),
    json_out: bool = typer.Option(False, "--json", help="Print the decision record as JSON."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="The catalog to look in (default: the nearest "
                                                                   "inverity.sqlite next to or above OUTPUT)."),
) -> None:
    """Show why an output is what it is: its decision record (from the catalog, or the .inv header)."""
    rec, source = _record_for(output, catalog)
    if json_out:
        typer.echo(json.dumps(rec, indent=2, sort_keys=True))
        return
    from rich.table import Table

    con = _stdout()
    con.print(f"{output}  (from {source})", markup=False, highlight=False)
    keys = ("input", "output", "status", "policy", "policy_resolved", "stage", "quality", "bytes", "input_bytes",
            "ratio", "container", "transfer_syntax", "input_sha256", "elapsed_ms", "version")
    info = Table(show_header=False, box=None, pad_edge=False)
    info.add_column(style="bold")
    info.add_column()
    for k in keys:
        if rec.get(k) is not None:
            info.add_row(k, str(rec[k]))
    prof = rec.get("profile") or {}
    if prof:
        info.add_row("profile", ", ".join(f"{k}={prof.get(k)}" for k in
                                           ("kind", "kind_confidence", "ood_score", "in_distribution")))
    for k, v in (rec.get("header") or {}).items():
        info.add_row(f"header.{k}", str(v))
    con.print(info)
    if rec.get("reasons"):
        con.print("reasons:", markup=False)
        for r in rec["reasons"]:
            con.print(f"  - {r}", markup=False, highlight=False)
    if rec.get("checks"):
        con.print("checks: " + ", ".join(f"{k}={v}" for k, v in rec["checks"].items()
                                         if not isinstance(v, (dict, list))), markup=False, highlight=False)
    if rec.get("attempts"):
        t = Table(title="attempts")
        for c in ("stage", "quality", "bytes", "passed", "reasons"):
            t.add_column(c)
        for a in rec["attempts"]:
            q = "-" if a.get("quality") is None else str(a["quality"])
            t.add_row(str(a.get("stage")), q, str(a.get("bytes", "-")),
                      ("yes" if a.get("passed") else "no") + (" *" if a.get("chosen") else ""),
                      "; ".join(a.get("reasons") or []))
        con.print(t)


def _learned_model_present() -> bool:
    from ..stages.learned.zoo import list_models

    try:
        return any(Path(m.path).is_file() for m in list_models())
    except Exception:  # noqa: BLE001 - no usable model means: skip the controlled run
        return False


@app.command("demo")
def demo_cmd(
    outdir: Path = typer.Argument(..., help="Directory for the demo (inputs/, auto/, controlled/, report/)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Worker processes (default: CPU count)."),
    small: bool = typer.Option(False, "--small", hidden=True, help="Half-size images (quick tests)."),
    only: Optional[list[str]] = typer.Option(None, "--only", hidden=True, help="Subset of sample names."),
) -> None:
    """Compress a built-in mixed set (photos, a drawing, a screenshot, a DICOM slice, a 16-bit frame) under
    'auto' (and 'controlled' when the learned model is present), print a summary and write the audit page."""
    from ..errors import InputError
    from ..samples import SAMPLES, build_demo_set

    if only:
        unknown = sorted(set(only) - set(SAMPLES))
        if unknown:
            raise InputError(f"unknown demo sample(s) {', '.join(unknown)}; available: {', '.join(SAMPLES)}")
    inputs = outdir / "inputs"
    build_demo_set(inputs, small=small, names=tuple(only) if only else None)
    runs = [("auto", outdir / "auto")]
    if _learned_model_present():
        runs.append(("controlled", outdir / "controlled"))
    con = _stdout()
    code = 0
    for policy, dest in runs:
        records = _run_batch([inputs], dest, policy, jobs, "local", False, label=policy)
        from ._summary import summary_lines, terminal_width

        for line in summary_lines(records, width=terminal_width(), title=f"policy {policy} -> {dest}"):
            con.print(line, markup=False, highlight=False, soft_wrap=True)
        code = max(code, _report_failures(records))
        from ..report import write_report

        page = write_report(dest, records, dest=outdir / "report" / ("" if policy == "auto" else policy),
                            roots=[inputs], preview_rejected=True)
        con.print(f"audit page: {page}", markup=False, highlight=False)
    if len(runs) == 1:
        con.print("learned model not present: skipped the 'controlled' run", markup=False, highlight=False)
    if code:
        raise SystemExit(code)
