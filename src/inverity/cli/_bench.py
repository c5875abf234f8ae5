"""``inverity bench corruptions|rd|routing`` — thin wrappers over :mod:`inverity.bench`.

Heavy modules (scipy, matplotlib, the stages) are imported inside the commands so ``inverity --help`` stays fast.
Progress bars go to stderr and only on a terminal.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from . import bench_app, fail

__all__: list[str] = []


def _split(values: Optional[list[str]]) -> list[str] | None:
    """Accept both ``--x a,b`` and ``--x a --x b``."""
    if not values:
        return None
    out = [v.strip() for chunk in values for v in chunk.split(",") if v.strip()]
    return out or None


def _ints(values: Optional[list[str]], what: str) -> list[int] | None:
    vals = _split(values)
    if vals is None:
        return None
    try:
        return [int(v) for v in vals]
    except ValueError:
        raise fail(f"{what} must be integers, got {','.join(vals)}") from None


class _Bar:
    """A rich progress bar on stderr (silent when stderr is not a terminal)."""

    def __init__(self, label: str) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        err = Console(file=sys.stderr)
        self.progress = Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.description}"),
                                 console=err, transient=True, disable=not err.is_terminal)
        self.task = self.progress.add_task("", total=None)

    def __enter__(self) -> Callable[[int, int, str], None]:
        self.progress.__enter__()

        def update(done: int, total: int, label: str) -> None:
            self.progress.update(self.task, completed=done, total=total, description=label)

        return update

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)


@bench_app.command("corruptions")
def corruptions_cmd(
    data: Path = typer.Option(..., "--data", help="Folder of clean images (walked recursively)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder: OUT/<corruption>/<severity>/<name>.png"),
    seed: int = typer.Option(0, "--seed", help="Seed; each file's noise is seeded by (seed, corruption, "
                                               "severity, file name)."),
    corruptions: Optional[list[str]] = typer.Option(None, "--corruptions", "-c",
                                                    help="Subset (comma-separated or repeated); default all 15."),
    severities: Optional[list[str]] = typer.Option(None, "--severities", "-s", help="Subset of 1..5."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N images."),
    resume: bool = typer.Option(False, "--resume", help="Keep files that already exist."),
) -> None:
    """Write the Kodak-C/CLIC-C style corrupted copies of a dataset (15 ImageNet-C corruptions × 5 severities)."""
    from ..bench.corruptions import corrupt_dataset

    names, sevs = _split(corruptions), _ints(severities, "--severities")
    with _Bar("corrupting") as bar:
        written = corrupt_dataset(data, out, seed=seed, corruptions=names, severities=sevs, limit=limit,
                                  overwrite=not resume, progress=bar)
    typer.echo(f"{len(written)} corrupted images in {out}")


@bench_app.command("rd")
def rd_cmd(
    data: Path = typer.Option(..., "--data", help="Folder of clean images."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder for tables and figures."),
    codecs: Optional[list[str]] = typer.Option(None, "--codecs", help="Stage ids (default "
                                                                       "jpeg,webp,avif,jxl,learned)."),
    qualities: Optional[str] = typer.Option(None, "--qualities", help="Grids, e.g. 'jpeg=10,50,90;learned=1,3,6' "
                                                                      "or '20,40,60,80' for all classical."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N images."),
    corrupted: Optional[Path] = typer.Option(None, "--corrupted", help="Folder written by 'bench corruptions'."),
    corruptions: Optional[list[str]] = typer.Option(None, "--corruptions", help="Corruptions to use "
                                                                                "(default: all found)."),
    severities: Optional[list[str]] = typer.Option(None, "--severities", help="Severities to use."),
    corrupted_qualities: Optional[str] = typer.Option(None, "--corrupted-qualities",
                                                      help="Grids for corrupted data (default: as --qualities)."),
    corrupted_limit: Optional[int] = typer.Option(None, "--corrupted-limit",
                                                  help="Only the first N images for corrupted data."),
    metrics: Optional[list[str]] = typer.Option(None, "--metrics", help="psnr,ms_ssim,ssimulacra2 (default all)."),
    corrupted_metrics: Optional[list[str]] = typer.Option(None, "--corrupted-metrics",
                                                          help="Metrics for corrupted data (default: --metrics)."),
    anchors: Optional[Path] = typer.Option(None, "--anchors", help="Folder of CompressAI result JSON files to "
                                                                   "overlay (e.g. ../shared/anchors/compressai-kodak)."),
    spectral: bool = typer.Option(True, "--spectral/--no-spectral", help="Accumulate error spectra."),
    spectral_bpp: float = typer.Option(0.5, "--spectral-bpp", help="Rate at which 2-D spectra are compared."),
    quick: bool = typer.Option(False, "--quick", help="Sparser quality grids (4 per codec)."),
) -> None:
    """Rate–distortion curves, BD-rate tables (against JPEG) and error spectra, on clean and corrupted data."""
    from ..bench import rd

    codec_list = _split(codecs) or list(rd.DEFAULT_CODECS)
    base = rd.QUICK_QUALITIES if quick else rd.DEFAULT_QUALITIES
    grids = rd.parse_qualities(qualities, codec_list, base)
    cgrids = rd.parse_qualities(corrupted_qualities, codec_list, grids) if corrupted_qualities else None
    with _Bar("rd") as bar:
        res = rd.run_rd(data, out, codecs=codec_list, qualities=grids, limit=limit, corrupted=corrupted,
                        corruptions=_split(corruptions), severities=_ints(severities, "--severities"),
                        corrupted_qualities=cgrids, corrupted_limit=corrupted_limit,
                        metrics=_split(metrics) or list(rd.METRICS),
                        corrupted_metrics=_split(corrupted_metrics), anchors=anchors, spectral=spectral,
                        spectral_bpp=spectral_bpp, progress=bar)
    clean_bd = [b for b in res.bd if b["condition"] == "clean" and b["distortion"] == "psnr"
                and not b["codec"].startswith("anchor:")]
    for b in clean_bd:
        val = "n/a" if b["bd_rate"] is None else f"{b['bd_rate']:+.1f} %"
        typer.echo(f"BD-rate (PSNR) {b['codec']} vs {b['anchor']}: {val}")
    for n in dict.fromkeys(res.notes):
        if "skipped" in n:
            typer.echo(f"note: {n}", err=True)
    typer.echo(f"wrote {out / 'rd.md'} ({len(res.points)} measurements)")


@bench_app.command("routing")
def routing_cmd(
    data: Path = typer.Option(..., "--data", help="Folder of images."),
    policy: str = typer.Option("auto", "--policy", help="auto|archive|diagnostic|delivery|controlled|FILE.toml"),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder for routing.md/.csv/.json."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N images."),
    step: int = typer.Option(5, "--grid-step", help="Oracle quality grid step for 0–100 stages."),
    exhaustive: bool = typer.Option(False, "--exhaustive", help="Oracle tries every grid quality, not just up "
                                                                "to the first passing one."),
) -> None:
    """The router's choice per image against an exhaustive oracle: regret, floor violations, learned use."""
    from ..bench import routing

    if not 1 <= step <= 50:
        raise fail(f"--grid-step must be 1..50, got {step}")
    grid = tuple(range(step, 101, step)) if 100 % step == 0 else tuple(range(step, 101, step)) + (100,)
    with _Bar("routing") as bar:
        res = routing.run_routing(data, policy, out, limit=limit, grid=grid, exhaustive=exhaustive, progress=bar)
    s = res["summary"]
    g = s.get("regret_geomean")
    typer.echo(f"{s['images']} images, policy {s['policy']}: regret {'n/a' if g is None else f'{g:.3f}'} "
               f"(geometric mean), {s['violations']} floor violations, {s['router_failures']} router failures; "
               f"wrote {out / 'routing.md'}")
