"""Train the learned stage: random crops, RD loss λ·255²·MSE + bpp, Adam, checkpoint + resume.

One variable-rate network is trained for every quality at once: each crop in a batch draws its own quality
index, so every gain unit sees gradients every step. The learning rate warms up, holds, then decays on a
cosine to ``lr_min`` by ``--steps`` (decay is where much of a short schedule's quality comes from).

``--procs P`` trains data-parallel in P single-threaded processes on one machine (``torch.distributed``, gloo,
``DistributedDataParallel`` averaging the gradients; rank 0 checkpoints and validates). On CPU this is how the
cores are used: one process with several intra-op threads ran ~20x slower late in training, because only the
calling thread flushes denormal floats (``torch.set_flush_denormal`` is per thread), while P processes each
flush their own. The effective batch is ``P * --batch``.

``--max-minutes T`` bounds the run by wall-clock time instead (a GPU lease is counted in minutes): the run stops
after T minutes or ``--steps``, whichever comes first, and past the warm-up the learning-rate schedule follows
the larger of the step fraction and the elapsed-time fraction, so a time-bounded run still ends fully decayed.

Checkpoints (model + optimiser + step + RNG) go to ``--ckpt`` every ``--ckpt-every`` steps and on exit, so an
interrupted run resumes where it stopped; ``--export`` writes the bare weights plus a JSON provenance record
(training image list hash, steps, λ per quality, validation bpp/PSNR).
"""
from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...formats import walked_extensions
from .model import LAMBDAS, ScaleHyperprior

__all__ = ["TrainConfig", "train", "load_folder", "evaluate", "remap_gains"]



@dataclass
class TrainConfig:
    train_dir: str
    val_dir: str | None = None
    ckpt: str = "checkpoints/learned.pt"
    steps: int = 20000
    batch: int = 8
    crop: int = 128
    lr: float = 5e-4
    lr_min: float = 2e-5
    warmup: int = 500
    decay_start: float = 0.5
    clip: float = 1.0
    N: int = 64
    M: int = 96
    ckpt_every: int = 250
    val_every: int = 1000
    val_images: int = 16
    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    log: str | None = None
    init: str | None = None
    procs: int = 1
    max_minutes: float = 0.0
    lambdas: str = ""  # comma-separated λ ladder, one per quality (empty: model.LAMBDAS)
    history: list = field(default_factory=list)

    def ladder(self) -> tuple[float, ...]:
        """The λ per quality this run trains.

        >>> TrainConfig("t", lambdas="0.001, 0.01").ladder(), len(TrainConfig("t").ladder()) == len(LAMBDAS)
        ((0.001, 0.01), True)
        """
        if not self.lambdas.strip():
            return LAMBDAS
        ladder = tuple(float(v) for v in self.lambdas.split(","))
        if list(ladder) != sorted(set(ladder)) or ladder[0] <= 0:
            raise ValueError(f"lambdas must be positive and strictly increasing, got {self.lambdas!r}")
        return ladder


def load_folder(folder: str | Path) -> tuple[list[np.ndarray], list[str]]:
    """All RGB images of a folder as uint8 arrays (sorted by name), and their names.

    Read through :func:`inverity.image.load` (the one loader: limits, EXIF orientation, palette/CMYK to RGB), or
    with Pillow where imagecodecs is not installed (the GPU machines' image has Pillow only). The file types are
    the registry's (:func:`inverity.formats.walked_extensions`).
    """
    imread: Callable[[str], np.ndarray]
    try:
        import imagecodecs  # noqa: F401  (the package's loader needs it)

        from ...image import load

        def _load(path: str) -> np.ndarray:
            return load(path).pixels

        imread = _load
    except ImportError:  # pragma: no cover - exercised on the GPU image
        from PIL import Image as PILImage

        def _pil_read(path: str) -> np.ndarray:
            with PILImage.open(path) as im:
                return np.asarray(im)

        imread = _pil_read

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in walked_extensions())
    arrays, names = [], []
    for p in files:
        a = imread(str(p))
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        a = a[:, :, :3]
        if a.dtype != np.uint8:
            continue
        arrays.append(np.ascontiguousarray(a))
        names.append(p.name)
    if not arrays:
        raise ValueError(f"no usable 8-bit images in {folder}")
    return arrays, names


def list_hash(folder: str | Path, names: list[str]) -> str:
    h = hashlib.sha256()
    for n in names:
        h.update(n.encode())
        h.update(hashlib.sha256((Path(folder) / n).read_bytes()).digest())
    return h.hexdigest()


def _batch(images: list[np.ndarray], batch: int, crop: int, rng: random.Random) -> torch.Tensor:
    out = np.empty((batch, crop, crop, 3), np.uint8)
    for i in range(batch):
        a = images[rng.randrange(len(images))]
        h, w = a.shape[:2]
        if h < crop or w < crop:
            a = np.pad(a, ((0, max(0, crop - h)), (0, max(0, crop - w)), (0, 0)), mode="reflect")
            h, w = a.shape[:2]
        y, x = rng.randrange(h - crop + 1), rng.randrange(w - crop + 1)
        c = a[y : y + crop, x : x + crop]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        out[i] = c
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


def pad64(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % 64, (-w) % 64
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


@torch.no_grad()
def evaluate(model: ScaleHyperprior, images: list[np.ndarray], device: str = "cpu") -> list[dict]:
    """Estimated bpp (likelihoods) and PSNR per quality on whole images."""
    model.eval()
    res = []
    for q in range(model.num_qualities):
        bpp, psnr = [], []
        for a in images:
            x = torch.from_numpy(a).permute(2, 0, 1)[None].float().div(255).to(device)
            h, w = x.shape[-2:]
            out = model(pad64(x), torch.tensor([q], device=device))
            x_hat = out["x_hat"][..., :h, :w].clamp(0, 1)
            mse = F.mse_loss(torch.round(x_hat * 255), x * 255).item()
            psnr.append(10 * math.log10(255**2 / max(mse, 1e-10)))
            bpp.append(out["bits"].item() / (h * w))
        res.append({"quality": q + 1, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(psnr))})
    model.train()
    return res


def remap_gains(weights: dict, old: tuple[float, ...], new: tuple[float, ...]) -> dict:
    """Gain-unit rows for a new λ ladder from a model trained on ``old``: a λ present in both keeps its row,
    any other is interpolated (or extrapolated from the nearest two) linearly in log λ — the continuous
    rate adaptation of Cui et al. 2021 — and then trained like the rest.

    >>> w = {"log_gain": torch.tensor([[0.0], [1.0]]), "log_inv_gain": torch.tensor([[0.0], [-1.0]])}
    >>> r = remap_gains(w, (0.01, 0.04), (0.005, 0.01, 0.04))
    >>> [round(v, 3) for v in r["log_gain"][:, 0].tolist()], [round(v, 3) for v in r["log_inv_gain"][:, 0].tolist()]
    ([-0.5, 0.0, 1.0], [0.5, 0.0, -1.0])
    """
    if len(old) < 2:
        raise ValueError("remapping gain units needs at least two trained λ")
    logs = [math.log(v) for v in old]
    out = dict(weights)
    for key in ("log_gain", "log_inv_gain"):
        rows = weights[key]
        if rows.shape[0] != len(old):
            raise ValueError(f"{key} has {rows.shape[0]} rows for {len(old)} λ")
        new_rows = []
        for lam in new:
            t = math.log(lam)
            hits = [i for i, v in enumerate(old) if math.isclose(v, lam, rel_tol=1e-9)]
            if hits:
                new_rows.append(rows[hits[0]].clone())
                continue
            i = min(max(sum(1 for v in logs if v < t), 1), len(old) - 1)  # segment [i-1, i] (or the end one)
            w = (t - logs[i - 1]) / (logs[i] - logs[i - 1])
            new_rows.append(rows[i - 1] + w * (rows[i] - rows[i - 1]))
        out[key] = torch.stack(new_rows)
    return out


def _lr_at(cfg: TrainConfig, step: int, elapsed: float = 0.0) -> float:
    """Learning rate at ``step``, ``elapsed`` seconds into a ``--max-minutes`` run (ignored without one).

    >>> cfg = TrainConfig(train_dir=".", steps=1000, warmup=10, lr=1e-3, lr_min=1e-5, decay_start=0.5,
    ...                   max_minutes=10.0)
    >>> _lr_at(cfg, 4), _lr_at(cfg, 400), _lr_at(cfg, 400, elapsed=600.0), round(_lr_at(cfg, 750), 6)
    (0.0005, 0.001, 1e-05, 0.000505)
    """
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = step / max(1, cfg.steps)
    if cfg.max_minutes > 0:
        frac = max(frac, elapsed / (60.0 * cfg.max_minutes))
    if frac < cfg.decay_start:
        return cfg.lr
    t = min(1.0, (frac - cfg.decay_start) / max(1e-9, 1.0 - cfg.decay_start))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))


def train(cfg: TrainConfig, export: str | None = None) -> ScaleHyperprior:
    """Train (or resume) per ``cfg``; with ``cfg.procs > 1`` in that many data-parallel processes."""
    if cfg.procs <= 1:
        try:
            return _train(cfg, export, rank=0, world=1)
        finally:  # in-process (tests, library callers): leave no flush-to-zero float state behind
            torch.set_flush_denormal(False)
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.start_processes(_worker, args=(cfg, export, port), nprocs=cfg.procs, join=False, start_method="spawn")

    def _forward(signum, frame):  # every worker checkpoints at the same step, then exits
        for proc in ctx.processes:
            if proc.is_alive() and proc.pid:
                os.kill(proc.pid, signal.SIGINT)

    old = {sig: signal.signal(sig, _forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not ctx.join():
            pass
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    model = ScaleHyperprior(cfg.N, cfg.M)
    model.load_state_dict(torch.load(cfg.ckpt, map_location="cpu", weights_only=False)["model"])
    return model


def _worker(rank: int, cfg: TrainConfig, export: str | None, port: int) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=cfg.procs)
    try:
        _train(cfg, export if rank == 0 else None, rank=rank, world=cfg.procs)
        # drop DDP's reducer (it holds the group and sits in reference cycles) before the group goes, and let
        # rank 0 finish its checkpoint/export before any rank tears its connections down
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # A clean exit skips interpreter teardown: C++ destructors of leftover torch/gloo threads run there, and on
    # CI one aborted a finished rank ("terminate called without an active exception", SIGABRT) after its work
    # was done and checkpointed. Only the success path gets here; an exception above still exits non-zero.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _resume_or_init(cfg: TrainConfig, model: ScaleHyperprior, opt: torch.optim.Optimizer, ckpt: Path,
                    rng: random.Random, say: Callable[[str], None]) -> int:
    """Resume from ``ckpt`` if it exists (weights, optimiser, step, both RNG states — ``rng`` in place — and the
    validation history), else start from ``cfg.init``'s exported weights if given; the step to continue at.

    Init weights for another λ ladder get their gain rows remapped (:func:`remap_gains`); init weights with
    fewer latent channels (``M``) than ``cfg.M`` are widened with :func:`~inverity.stages.learned.widen.widen_state`
    so the wider model starts computing exactly what they computed."""
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location=cfg.device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        cfg.history = state.get("history", [])
        say(f"resumed from {ckpt} at step {step}")
    elif cfg.init:
        # continue from exported weights (the zoo's file: {"state_dict": ...} or a bare state dict) with a
        # fresh optimiser and schedule — how a later session picks up the committed model
        state = torch.load(cfg.init, map_location=cfg.device, weights_only=False)
        weights = state.get("state_dict", state.get("model", state))
        old_lambdas = tuple(state.get("architecture", {}).get("lambdas", model.lambdas))
        if old_lambdas != model.lambdas:
            weights = remap_gains(weights, old_lambdas, model.lambdas)
            say(f"gain units remapped from λ {list(old_lambdas)} to {list(model.lambdas)}")
        m0 = int(weights["g_a.6.weight"].shape[0])
        if m0 < model.M:  # a narrower model: widen it so training starts from its function (widen.py)
            from .widen import widen_state

            weights = widen_state(weights, model.N, m0, model.M, model.lambdas, seed=cfg.seed)
            say(f"latent widened function-preservingly from M={m0} to M={model.M}")
        model.load_state_dict(weights)
        say(f"initialised from weights {cfg.init}")
    return step


def _check_ranks_agree(model: ScaleHyperprior, world: int) -> None:
    """Every rank applied the same averaged updates to the same start: their weights must agree exactly."""
    import torch.distributed as dist

    digest = torch.tensor([float(p.detach().double().sum()) for p in model.parameters()], dtype=torch.float64)
    gathered = [torch.empty_like(digest) for _ in range(world)]
    dist.all_gather(gathered, digest)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError("data-parallel ranks ended with different weights")


def _train(cfg: TrainConfig, export: str | None, rank: int, world: int) -> ScaleHyperprior:
    if world > 1:
        import torch.distributed as dist
    if cfg.threads or world > 1:
        torch.set_num_threads(cfg.threads or 1)
    # denormal floats (GDN/latent tails late in training) slow CPU kernels 10-100x; flush them to zero
    torch.set_flush_denormal(True)

    def say(msg: str) -> None:
        if rank == 0:
            print(msg, flush=True)

    images, names = load_folder(cfg.train_dir)
    val_images: list[np.ndarray] = []
    if cfg.val_dir:
        val_images = load_folder(cfg.val_dir)[0][: cfg.val_images]
    if str(cfg.device).startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick the fastest kernels once
    torch.manual_seed(cfg.seed)  # before the model: its initial weights come from this generator
    model = ScaleHyperprior(cfg.N, cfg.M, cfg.ladder()).to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = random.Random(cfg.seed)
    ckpt = Path(cfg.ckpt)
    step = _resume_or_init(cfg, model, opt, ckpt, rng, say)
    net: torch.nn.Module = model
    if world > 1:
        # DDP broadcasts rank 0's weights at construction and averages gradients in backward; each rank draws
        # its own crops and qualities
        net = torch.nn.parallel.DistributedDataParallel(model)
        if rank:
            rng = random.Random(f"{cfg.seed}:{rank}:{step}")
            torch.manual_seed(cfg.seed * 1000 + rank * 7919 + step)
    train_hash = list_hash(cfg.train_dir, names)
    lambdas = torch.tensor(model.lambdas, device=cfg.device)
    stop = {"now": False}

    def _on_signal(signum, frame):  # finish the step, checkpoint, exit
        stop["now"] = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    def save() -> None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "rng": rng.getstate(),
                    "torch_rng": torch.get_rng_state(), "history": cfg.history,
                    "config": {k: v for k, v in asdict(cfg).items() if k != "history"},
                    "train_hash": train_hash, "train_count": len(names)}, tmp)
        os.replace(tmp, ckpt)

    t0, run_loss, run_bpp, run_mse = time.time(), 0.0, 0.0, 0.0
    t_start, elapsed = t0, 0.0
    model.train()
    while step < cfg.steps and not stop["now"]:
        for g in opt.param_groups:
            g["lr"] = _lr_at(cfg, step, elapsed)
        x = _batch(images, cfg.batch, cfg.crop, rng).to(cfg.device)
        q = torch.randint(0, model.num_qualities, (cfg.batch,), device=cfg.device)
        out = net(x, q)
        mse = ((out["x_hat"] - x) ** 2).mean(dim=(1, 2, 3))
        bpp = out["bits"] / (x.shape[-1] * x.shape[-2])
        loss = (lambdas[q] * 255**2 * mse + bpp).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        elapsed = time.time() - t_start
        if world > 1:  # a signal on any rank stops every rank after this same step; rank clocks agree (max)
            flag = torch.tensor([1.0 if stop["now"] else 0.0, elapsed], dtype=torch.float64)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop["now"], elapsed = bool(flag[0].item() > 0), float(flag[1].item())
        out_of_time = cfg.max_minutes > 0 and elapsed >= 60.0 * cfg.max_minutes
        stop["now"] = stop["now"] or out_of_time
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        step += 1
        run_loss += loss.item(); run_bpp += bpp.mean().item(); run_mse += mse.mean().item()
        if step % 100 == 0 and rank == 0:
            dt = time.time() - t0
            print(f"step {step}: loss {run_loss/100:.4f} (bpp + lambda*255^2*mse, mean of the last 100 steps), "
                  f"rate {run_bpp/100:.3f} bpp, mse {run_mse/100:.5f} (pixels 0..1), "
                  f"lr {_lr_at(cfg, step, elapsed):.2e}, {dt/100:.3f} s/step", flush=True)
            t0, run_loss, run_bpp, run_mse = time.time(), 0.0, 0.0, 0.0
        if rank == 0 and val_images and (step % cfg.val_every == 0 or step == cfg.steps or out_of_time):
            res = evaluate(model, val_images, cfg.device)
            cfg.history.append({"step": step, "val": res})
            print(f"val step {step} (quality: rate bpp / PSNR dB): "
                  + ", ".join(f"q{r['quality']}: {r['bpp']:.3f} bpp / {r['psnr']:.2f} dB" for r in res), flush=True)
        if rank == 0 and step % cfg.ckpt_every == 0:
            save()
    if world > 1:
        _check_ranks_agree(model, world)
    if rank == 0:
        save()
        print(f"checkpoint saved: {ckpt.resolve()} (step {step})", flush=True)
    if export:
        export_weights(model, export, cfg, train_hash, len(names), step)
    return model


def export_weights(model: ScaleHyperprior, path: str | Path, cfg: TrainConfig, train_hash: str,
                   train_count: int, step: int) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, path)
    prov = {"architecture": {"N": model.N, "M": model.M, "lambdas": list(model.lambdas)},
            "train_dir": Path(cfg.train_dir).name, "train_images": train_count, "train_list_sha256": train_hash,
            "steps": step, "batch": cfg.batch, "crop": cfg.crop, "lr": cfg.lr, "lr_min": cfg.lr_min,
            "validation": cfg.history[-1] if cfg.history else None}
    path.with_suffix(".json").write_text(json.dumps(prov, indent=2))


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("train_dir")
    p.add_argument("--val-dir")
    p.add_argument("--export")
    p.add_argument("--init", help="start from exported weights (e.g. the zoo's hp-gain.pt) when --ckpt is absent")
    for f in TrainConfig.__dataclass_fields__.values():
        if f.name in ("train_dir", "val_dir", "history", "log", "init"):
            continue
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default) if f.default is not None else str,
                       default=f.default)
    a = vars(p.parse_args(argv))
    export = a.pop("export")
    cfg = TrainConfig(**a)
    train(cfg, export)


if __name__ == "__main__":
    main()
