"""The audit page: one static HTML file per batch that shows, for every asset, what was done and why.

This is where a failure becomes legible. For each asset of a ``compress`` output directory the page shows the
decision — first why the chosen candidate won, then what was rejected and why — the original and the
reconstruction under a slider, an amplified error heat map with the verifier's own worst windows marked on it
(``checks["worst_windows"]``: never recomputed here), the error's spectrum, 1:1 crops around those windows, every
attempt (collapsed), the checks as small tables, optionally a preview of a rejected learned attempt (re-encoded,
labelled "rejected — not delivered") and the full decision record::

    OUTDIR/inverity.sqlite ──► records ──► per asset: load original + decode output
                                              │  tone-map (16-bit), downscale, |x̂ − x|, FFT, crops at the
                                              │  verifier's worst windows, [re-encode the rejected learned try]
                                              ▼
                               OUTDIR/report/index.html + OUTDIR/report/assets/*.webp|*.png

The page stands alone: no external resource (CSS and JS inline, images are files beside it), so it can be
archived with the batch and opened offline.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import InputError
from ._build import ASSETS_DIR, read_records_file, resolve_input, resolve_output, verdict_of
from ._compare import review_images

__all__ = ["write_report", "read_records_file", "resolve_input", "resolve_output", "verdict_of", "REPORT_DIR",
           "ASSETS_DIR", "review_images"]

#: default folder, inside the output directory, that receives the page
REPORT_DIR = "report"


def write_report(outdir: str | os.PathLike[str], records: Iterable[Mapping[str, Any]] | None = None, *,
                 dest: str | os.PathLike[str] | None = None,
                 roots: Iterable[str | os.PathLike[str]] = (), preview_rejected: bool = False) -> Path:
    """Write the audit page of a batch and return the path of its ``index.html``.

    Parameters
    ----------
    outdir
        A ``compress`` output directory (outputs and ``inverity.sqlite``).
    records
        Decision records to show (e.g. what :func:`inverity.pipeline.compress` returned); default: every record
        of ``outdir/inverity.sqlite``.
    dest
        Where to write: a directory (the page is ``dest/index.html``) or a path ending in ``.html``; its images go
        to an ``assets/`` folder beside it. Default ``outdir/report``.
    roots
        Directories to look for originals in, for records whose ``input`` is relative to the directory that was
        compressed (the current directory and ``outdir``'s parent are always tried).
    preview_rejected
        Re-encode each asset's best rejected learned attempt from the record's stage, quality and options (the
        pipeline keeps no rejected payload) and show it, verified again, as "rejected — not delivered". Costs
        one learned encode + decode per such asset.

    Returns
    -------
    pathlib.Path
        The page. Images are written first and the page last, each atomically, so an interrupted run never
        leaves a page pointing at missing images.

    Raises
    ------
    InputError
        ``outdir`` is not a directory, or it has no catalog and no records were given.

    Examples
    --------
    >>> import tempfile
    >>> page = write_report(tempfile.mkdtemp(), records=[])
    >>> page.name, "no assets" in page.read_text()
    ('index.html', True)
    """
    from ._build import build_report, load_catalog_records

    out = Path(outdir)
    if not out.is_dir():
        raise InputError(f"{out}: not a directory (expected an 'inverity compress' output directory)")
    recs = load_catalog_records(out) if records is None else [dict(r) for r in records]
    target = Path(dest) if dest is not None else out / REPORT_DIR
    page = target if target.suffix.lower() in (".html", ".htm") else target / "index.html"
    if page.parent.exists() and not page.parent.is_dir():
        raise InputError(f"{page.parent}: not a directory")
    return build_report(out, recs, page, [Path(r) for r in roots], preview_rejected=preview_rejected)
