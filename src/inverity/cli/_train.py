"""``inverity train`` — train (or resume) the learned stage's network, optionally exporting it into the zoo.

A thin wrapper over :func:`inverity.stages.learned.train.train` (flags mirror :class:`TrainConfig`) and
:func:`inverity.stages.learned.export.export`. Torch is imported inside the command only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app, fail

__all__: list[str] = []


@app.command("train")
def train_cmd(
    train_dir: Path = typer.Argument(..., help="Folder of 8-bit RGB training images (never Kodak/validation)."),
    val_dir: Optional[Path] = typer.Option(None, "--val-dir", help="Validation images (model selection only)."),
    ckpt: Path = typer.Option(Path("checkpoints/learned.pt"), "--ckpt", help="Checkpoint; resumed if it exists."),
    steps: int = typer.Option(20000, "--steps", min=1, help="Total optimiser steps (including resumed ones)."),
    batch: int = typer.Option(8, "--batch", min=1),
    crop: int = typer.Option(128, "--crop", min=64, help="Random crop size (a multiple of 64)."),
    lr: float = typer.Option(5e-4, "--lr"),
    lr_min: float = typer.Option(2e-5, "--lr-min"),
    warmup: int = typer.Option(500, "--warmup", min=0),
    n: int = typer.Option(64, "--N", min=1, help="Transform channels."),
    m: int = typer.Option(96, "--M", min=1, help="Latent channels."),
    ckpt_every: int = typer.Option(250, "--ckpt-every", min=1),
    val_every: int = typer.Option(1000, "--val-every", min=1),
    threads: int = typer.Option(0, "--threads", min=0, help="Torch threads (0 = torch's default)."),
    procs: int = typer.Option(1, "--procs", min=1, help="Data-parallel processes (one thread each on CPU)."),
    max_minutes: float = typer.Option(0.0, "--max-minutes", min=0.0,
                                      help="Stop after this many minutes (0 = no limit); the LR decay follows "
                                           "the elapsed fraction, so the run still ends fully decayed."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, ..."),
    export: Optional[str] = typer.Option(None, "--export", help="After training, export into the zoo as NAME."),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Zoo folder for --export."),
    timing_repeats: int = typer.Option(3, "--timing-repeats", min=1, help="Runs of the --export CPU timing."),
) -> None:
    """Train the variable-rate hyperprior (all qualities at once); checkpoints every --ckpt-every steps."""
    if crop % 64:
        raise fail(f"--crop must be a multiple of 64, got {crop}")
    if not train_dir.is_dir():
        raise fail(f"training folder {train_dir} does not exist")
    if val_dir is not None and not val_dir.is_dir():
        raise fail(f"validation folder {val_dir} does not exist")
    from ..stages.learned.train import TrainConfig, train

    cfg = TrainConfig(train_dir=str(train_dir), val_dir=str(val_dir) if val_dir else None, ckpt=str(ckpt),
                      steps=steps, batch=batch, crop=crop, lr=lr, lr_min=lr_min, warmup=warmup, N=n, M=m,
                      ckpt_every=ckpt_every, val_every=val_every, threads=threads, seed=seed, device=device,
                      procs=procs, max_minutes=max_minutes)
    try:
        train(cfg)
    except ValueError as exc:  # e.g. no usable images
        raise fail(str(exc)) from None
    if export:
        from ..stages.learned.export import export as export_model

        info = export_model(ckpt, export, wdir=weights_dir, val_dir=val_dir, repeats=timing_repeats)
        typer.echo(f"exported {info.name} v{info.version} (sha256 {info.sha256[:16]}…)")
