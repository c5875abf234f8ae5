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


def _fmt_bytes(n: Any) -> str:
    if n is None:
        return "-"
    n = int(n)
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _verdict(rec: dict[str, Any]) -> str:
    return {"done": "passed", "skipped": "passed (resumed)", "failed": "FAILED"}.get(rec.get("status", ""), "?")


def _summary_table(records: list[dict[str, Any]], title: str | None = None) -> Any:
    from rich.table import Table

    t = Table(title=title, show_lines=False, pad_edge=False)
    for col, just in (("asset", "left"), ("kind", "left"), ("policy", "left"), ("stage", "left"),
                      ("quality", "right"), ("bytes", "right"), ("ratio", "right"), ("verdict", "left")):
        t.add_column(col, justify=just, no_wrap=(col != "asset"))  # type: ignore[arg-type]
    for r in records:
        pol = r.get("policy") or "-"
        if r.get("policy_resolved") and r.get("policy_resolved") != pol:
            pol = f"{pol}->{r['policy_resolved']}"
        ratio = (r.get("input_bytes") or 0) / r["bytes"] if r.get("bytes") else None
        t.add_row(str(r.get("input")), str((r.get("profile") or {}).get("kind") or "-"), pol,
                  str(r.get("stage") or "-") + ("/dcm" if r.get("container") == "dicom" else ""),
                  "-" if r.get("quality") is None else str(r["quality"]), _fmt_bytes(r.get("bytes")),
                  "-" if ratio is None else f"{ratio:.2f}x", _verdict(r))
    return t


def _stdout() -> Any:
    from rich.console import Console

    # explicit file: typer/pytest may swap sys.stdout after import; soft_wrap keeps JSON-ish cells whole
    return Console(file=sys.stdout, width=max(100, Console(file=sys.stdout).width))


def _run_batch(inputs: list[Path], outdir: Path, policy: str, jobs: int | None, engine: str, json_out: bool,
               *, label: str = "compress") -> list[dict[str, Any]]:
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
                        on_start=on_start, on_note=on_note)


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
                               help="auto|archive|diagnostic|delivery|controlled or a policy FILE.toml."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Worker processes (default: CPU count)."),
    engine: str = typer.Option("local", "--engine", help="local (process pool) or ray."),
    json_out: bool = typer.Option(False, "--json", help="Print one decision record per line (JSONL) on stdout."),
) -> None:
    """Route each image to the stage that fits it, verify the reconstruction, write one output per input.

    Re-running skips assets already done (same bytes, same policy). Exit 2 if any asset failed.
    """
    records = _run_batch(inputs, output, policy, jobs, engine, json_out)
    if not json_out:
        from ._summary import summary_lines, terminal_width

        con = _stdout()
        for line in summary_lines(records, width=terminal_width(), catalog=str(output / "inverity.sqlite")):
            con.print(line, markup=False, highlight=False, soft_wrap=True)
    code = _report_failures(records)
    if code:
        # SystemExit, not typer.Exit: with standalone_mode=False click *returns* an Exit's code, which
        # cli.main() currently discards; SystemExit reaches main()'s handler and becomes the exit status.
        raise SystemExit(code)


def _record_for(path: Path) -> tuple[dict[str, Any], str]:
    """The decision record of an output: from the nearest catalog, else from its ``.inv`` header."""
    from ..catalog import Catalog, find_catalog
    from ..errors import InputError

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    cat_path = find_catalog(path.parent)
    if cat_path is not None:
        with Catalog(cat_path, readonly=True) as cat:
            rec = cat.lookup_output(path)
        if rec is not None:
            return rec, f"catalog {cat_path}"
    from ..formats import sniff

    data = path.read_bytes()
    if sniff(data[:512]) == "inv":
        from ..container import unpack

        header, payload = unpack(data)
        return {"output": str(path), "bytes": len(data), "payload_bytes": len(payload), "container": "inv",
                "stage": header.get("codec_id"), "quality": header.get("quality"), "header": header}, \
            "the .inv container header (no catalog entry)"
    where = f"catalog {cat_path}" if cat_path else "no catalog next to or above it"
    raise InputError(f"{path}: no decision record ({where}; not an .inv file)")


@app.command("inspect")
def inspect_cmd(
    output: Path = typer.Argument(..., help="An output file written by 'inverity compress'."),
    json_out: bool = typer.Option(False, "--json", help="Print the decision record as JSON."),
) -> None:
    """Show why an output is what it is: its decision record (from the catalog, or the .inv header)."""
    rec, source = _record_for(output)
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
    try:
        from ..stages.learned.zoo import list_models
    except ImportError:
        return False
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
        try:
            from ..report import write_report
        except ImportError:
            continue
        page = write_report(dest, records, dest=outdir / "report" / ("" if policy == "auto" else policy),
                            roots=[inputs], preview_rejected=True)
        con.print(f"audit page: {page}", markup=False, highlight=False)
    if len(runs) == 1:
        con.print("learned model not present: skipped the 'controlled' run", markup=False, highlight=False)
    if code:
        raise SystemExit(code)
