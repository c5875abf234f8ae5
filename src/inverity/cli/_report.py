"""``inverity report OUTDIR [-o DEST]``: write the static HTML audit page of a batch."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app

__all__ = ["report"]


@app.command("report")
def report(
    outdir: Path = typer.Argument(..., help="An 'inverity compress' output directory (with inverity.sqlite)."),
    dest: Optional[Path] = typer.Option(None, "-o", "--output",
                                        help="Directory (or .html file) for the page; default OUTDIR/report."),
    records: Optional[Path] = typer.Option(None, "--records",
                                           help="Read decision records from this JSONL file (the output of "
                                                "'inverity compress --json') instead of the catalog."),
    root: Optional[List[Path]] = typer.Option(None, "--root",
                                              help="Directory the inputs are relative to (repeatable); "
                                                   "default: the current directory and OUTDIR's parent."),
    preview_rejected: bool = typer.Option(False, "--preview-rejected",
                                          help="Re-encode each rejected learned attempt from its record (stage, "
                                               "quality, options) and show it, labelled 'rejected — not "
                                               "delivered' (one learned encode per such asset)."),
) -> None:
    """Write the audit page: every asset with its decision, a comparison slider, error and spectral maps."""
    from ..report import read_records_file, write_report

    recs = read_records_file(records) if records is not None else None
    page = write_report(outdir, recs, dest=dest, roots=root or (), preview_rejected=preview_rejected)
    typer.echo(str(page))
