"""Fine-tune a zoo model's *decoder* on the latents its real encoder produces, and export it as a new zoo entry.

Training with noise or straight-through rounding never shows the synthesis exactly what it decodes: the real
stream rounds ``y`` around the entropy model's μ (for a context model, the checkerboard's μ at the non-anchors,
which training of the transforms never saw). This stage of the recipe (Minnen & Singh 2020, arXiv 2007.08739,
"a final decoder fine-tune on hard-quantised latents") freezes everything the *encoder* runs — g_a, the gains,
h_a, h_s, the context — computes ŷ exactly as the stream carries it, and trains only what the decoder alone runs
after the latents: the inverse gains and g_s. Old streams keep decoding with the old model (the header names
the model and pins its weights), so the result is a new zoo entry whose bitstream is the base model's.

Objectives (``--loss``):

- ``mse``: mean over the batch of log(MSE) — every quality weighs the same in dB, as in a BD-rate;
- ``perceptual``: ``mse`` plus ``alpha`` × (1 − MS-SSIM) on luma-weighted RGB, for the perceptual variant that
  the controlled floors (SSIMULACRA2, structure checks) judge.

Steps::

    python -m inverity.stages.learned.train_dec train --data ../shared/datasets/train --base hp-ctx \\
        --out checkpoints/dec/mse.pt --max-minutes 40 [--loss perceptual --alpha 0.5] [--val ../shared/datasets/validation]
    python -m inverity.stages.learned.train_dec export checkpoints/dec/mse.pt --name hp-ctx-dec

Training reads pixels only through :func:`inverity.image.load`, checkpoints every few minutes (atomic) and
resumes from ``--out``; the learning rate follows a cosine over the wall-clock budget.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..._atomic import atomic_write_bytes
from ...errors import ModelError
from ...formats import walked_extensions
from . import zoo
from .context import anchor_mask, context_params
from .model import ScaleHyperprior

__all__ = ["DECODER_KEYS", "decoder_state", "exact_latents", "ms_ssim", "train", "export_delta", "main"]

#: state-dict keys a decoder fine-tune changes: what the decoder alone runs after the latents
DECODER_KEYS = ("g_s.", "log_inv_gain")
CROP = 256


def decoder_state(model: ScaleHyperprior) -> dict[str, torch.Tensor]:
    """The decoder-only tensors of ``model`` (see :data:`DECODER_KEYS`)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k.startswith(DECODER_KEYS)}


def _read(path: Path) -> np.ndarray:
    from ...image import load

    a = load(path).pixels
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def _images(data: Path) -> tuple[list[np.ndarray], list[str]]:
    files = sorted(p for p in data.iterdir() if p.suffix.lower() in walked_extensions())
    out, names = [], []
    for p in files:
        a = _read(p)
        if a.dtype == np.uint8 and min(a.shape[:2]) >= CROP:
            out.append(a)
            names.append(p.name)
    if not out:
        raise ModelError(f"no 8-bit image of at least {CROP}x{CROP} in {data}")
    return out, names


@torch.no_grad()
def exact_latents(model: ScaleHyperprior, ctx: Any, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """ŷ for pixels ``x`` (B×3×H×W in [0, 1]) at 0-based qualities ``q``, rounded as the stream rounds it: around
    h_s's μ, or for a context model around the checkerboard's μ at the non-anchors (the decoder runs g_s(ŷ·g⁻¹))."""
    gain, _ = model.gains(q)
    yg = model.g_a(x) * gain
    hyper = model.h_s(torch.round(model.h_a(yg)))
    means_h = hyper[:, : model.M]
    means = means_h
    if ctx is not None:
        anchors = torch.from_numpy(anchor_mask(*yg.shape[-2:]))[None, None].to(yg.device)
        s_a = torch.where(anchors, torch.round(yg - means_h), torch.zeros_like(yg))
        means_c, _ = context_params(ctx, hyper, s_a)
        means = torch.where(anchors, means_h, means_c)
    return torch.round(yg - means) + means


def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float32) - size // 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None].repeat(3, 1, 1, 1)


_MS_W = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Differentiable MS-SSIM per sample (Wang et al. 2003; 5 scales, 11×11 Gaussian σ 1.5, data range 1).

    Examples
    --------
    >>> x = torch.rand(2, 3, 192, 192)
    >>> bool(torch.allclose(ms_ssim(x, x), torch.ones(2)))
    True
    """
    k = _gauss().to(a)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for i, w in enumerate(_MS_W):
        mu_a, mu_b = F.conv2d(a, k, groups=3), F.conv2d(b, k, groups=3)
        saa = F.conv2d(a * a, k, groups=3) - mu_a ** 2
        sbb = F.conv2d(b * b, k, groups=3) - mu_b ** 2
        sab = F.conv2d(a * b, k, groups=3) - mu_a * mu_b
        cs = (2 * sab + c2) / (saa + sbb + c2)
        if i == len(_MS_W) - 1:
            lum = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
            vals.append((lum * cs).mean(dim=(1, 2, 3)).clamp_min(1e-6) ** w)
        else:
            vals.append(F.relu(cs.mean(dim=(1, 2, 3))).clamp_min(1e-6) ** w)
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return torch.stack(vals).prod(dim=0)


def _crops(images: list[np.ndarray], n: int, gen: np.random.Generator) -> torch.Tensor:
    out = []
    for _ in range(n):
        a = images[int(gen.integers(len(images)))]
        y0 = int(gen.integers(0, a.shape[0] - CROP + 1))
        x0 = int(gen.integers(0, a.shape[1] - CROP + 1))
        c = torch.from_numpy(np.array(a[y0:y0 + CROP, x0:x0 + CROP])).permute(2, 0, 1)
        if gen.random() < 0.5:
            c = c.transpose(1, 2)
        if gen.random() < 0.5:
            c = c.flip(2)
        if gen.random() < 0.5:
            c = c.flip(1)
        out.append(c)
    return torch.stack(out).float().div(255.0)


@torch.no_grad()
def _evaluate(model: ScaleHyperprior, ctx: Any, val: list[torch.Tensor]) -> list[float]:
    """Mean PSNR (dB, 8-bit rounded and clipped, as decoded) of the validation crops, per quality."""
    out = []
    for q in range(model.num_qualities):
        ps = []
        for x in val:
            qq = torch.full((x.shape[0],), q, device=x.device)
            xh = model.g_s(exact_latents(model, ctx, x, qq) * model.gains(qq)[1])
            xh = torch.round(xh.clamp(0, 1) * 255) / 255
            mse = ((xh - x) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
            ps += (10 * torch.log10(1 / mse)).tolist()
        out.append(round(float(np.mean(ps)), 3))
    return out


def _loss(x: torch.Tensor, x_hat: torch.Tensor, kind: str, alpha: float) -> tuple[torch.Tensor, dict[str, float]]:
    mse = ((x_hat - x) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
    loss = torch.log(mse).mean()
    info = {"psnr": float((10 * torch.log10(1 / mse.detach())).mean())}
    if kind == "perceptual":
        ms = ms_ssim(x_hat.clamp(0, 1), x)
        loss = loss + alpha * (1 - ms).mean() / 0.01  # one MS-SSIM point (0.01) weighs alpha nats of MSE
        info["ms_ssim"] = float(ms.detach().mean())
    return loss, info


def _trainable(base: str | None, Ns: int | None, seed: int) -> tuple[ScaleHyperprior, Any, zoo.ModelInfo, list[Any]]:
    """A float32 copy of zoo model ``base`` (g_s widened to ``Ns`` if given) with only the decoder-side tensors
    trainable, its context net (or None), its ModelInfo and the trainable parameters."""
    frozen, info = zoo.load_model(base)
    ctx = getattr(zoo.load_codec(info.name)[0], "context", None)
    Ns = Ns if Ns and Ns != info.N else None
    model = ScaleHyperprior(info.N, info.M, info.lambdas, Ns)
    if Ns:
        from .widen import widen_synthesis

        model.load_state_dict(widen_synthesis(frozen.state_dict(), Ns, seed=seed))
    else:
        model.load_state_dict(frozen.state_dict())
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for k, p in model.named_parameters() if k.startswith(DECODER_KEYS)]
    for p in params:
        p.requires_grad_(True)
    model.eval()  # no dropout/batchnorm; eval only fixes the rounding path of the frozen parts
    return model, ctx, info, params


def train(data: Path, out: Path, *, base: str | None = None, loss: str = "mse", alpha: float = 0.5,
          Ns: int | None = None,
          max_minutes: float = 40.0, batch: int = 8, lr: float = 5e-5, lr_min: float = 1e-6, warmup: int = 50,
          seed: int = 0, val: Path | None = None, val_every: int = 500, save_every_s: float = 300.0,
          device: str = "cpu", qualities: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Time-bounded Adam on g_s and the inverse gains of zoo model ``base``; resumes from ``out`` if present.

    ``Ns`` widens the synthesis to that many hidden channels first (:func:`.widen.widen_synthesis`: the same
    function at step 0), for a wider decoder of the same bitstream. ``device``: where to train (``cuda`` on a
    lent GPU, ``scripts/gpu/device_run.sh`` with ``MODE=dec``); checkpoints are device-independent.
    ``qualities`` (1-based) restricts training to those rate points (a decoder specialised for the top end)."""
    if loss not in ("mse", "perceptual"):
        raise ModelError(f"unknown decoder fine-tune loss {loss!r} (mse, perceptual)")
    torch.manual_seed(seed)
    dev = torch.device(device)
    model, ctx, info, params = _trainable(base, Ns, seed)
    Ns = model.Ns if model.Ns != info.N else None
    model.to(dev)
    ctx = copy.deepcopy(ctx).to(dev) if ctx is not None else None
    opt = torch.optim.Adam(params, lr=lr)
    images, names = _images(data)
    vgen = np.random.default_rng(12345)
    val_x = [_crops(_images(val)[0], 4, vgen).to(dev) for _ in range(3)] if val else []
    step, elapsed, history = 0, 0.0, []
    if out.is_file():
        ck = torch.load(out, map_location="cpu", weights_only=False)
        if (ck["config"]["base_sha256"] != info.sha256 or ck["config"]["loss"] != loss
                or ck["config"].get("Ns") != Ns):
            raise ModelError(f"{out} was trained from other weights, another loss or another width; choose another "
                             "--out")
        model.load_state_dict({**model.state_dict(), **ck["decoder"]})
        if ck.get("opt"):  # a checkpoint brought back from a GPU run travels without its Adam state
            opt.load_state_dict(ck["opt"])
        step, elapsed, history = ck["step"], ck["elapsed_s"], ck["history"]
    elif val_x:
        history.append({"step": 0, "val_psnr": _evaluate(model, ctx, val_x)})
        print(json.dumps(history[-1]), flush=True)
    q_pool = np.array([q - 1 for q in qualities] if qualities else range(model.num_qualities), dtype=np.int64)
    if q_pool.min() < 0 or q_pool.max() >= model.num_qualities:
        raise ModelError(f"qualities {list(qualities or ())} outside 1..{model.num_qualities}")
    gen = np.random.default_rng(seed + step)
    budget = max_minutes * 60.0
    t_start, last_save = time.time() - elapsed, time.time()
    config = {"base": info.name, "base_version": info.version, "base_sha256": info.sha256, "loss": loss, "Ns": Ns,
              "alpha": alpha if loss == "perceptual" else None, "batch": batch, "crop": CROP, "lr": lr,
              "lr_min": lr_min, "warmup": warmup, "seed": seed, "max_minutes": max_minutes,
              "train_dir": data.name, "train_images": len(names),
              "train_list_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
              "val_dir": val.name if val else None, "qualities": [int(q) + 1 for q in q_pool]}

    def save() -> None:
        buf = io.BytesIO()
        torch.save({"decoder": decoder_state(model), "opt": opt.state_dict(), "step": step,
                    "elapsed_s": time.time() - t_start, "history": history, "config": config}, buf)
        atomic_write_bytes(out, buf.getvalue())

    run: dict[str, float] = {}
    while time.time() - t_start < budget:
        frac = min(1.0, (time.time() - t_start) / budget)
        cur = lr * (step + 1) / warmup if step < warmup else lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = cur
        x = _crops(images, batch, gen).to(dev)
        q = torch.from_numpy(gen.choice(q_pool, batch)).to(dev)
        y_hat = exact_latents(model, ctx, x, q)
        x_hat = model.g_s(y_hat * model.gains(q)[1])
        objective, parts = _loss(x, x_hat, loss, alpha)
        opt.zero_grad()
        objective.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        for k, v in parts.items():
            run[k] = v if k not in run else 0.98 * run[k] + 0.02 * v
        if step % 50 == 0:
            history.append({"step": step, "t_s": round(time.time() - t_start), "lr": cur,
                            **{k + "_ema": round(v, 4) for k, v in run.items()}})
            print(json.dumps(history[-1]), flush=True)
        if val_x and step % val_every == 0:
            history.append({"step": step, "val_psnr": _evaluate(model, ctx, val_x)})
            print(json.dumps(history[-1]), flush=True)
        if time.time() - last_save > save_every_s:
            save()
            last_save = time.time()
    if val_x:
        history.append({"step": step, "val_psnr": _evaluate(model, ctx, val_x)})
        print(json.dumps(history[-1]), flush=True)
    save()
    return {"step": step, "history": history}


def export_delta(checkpoint: str | os.PathLike[str], name: str, *, wdir: str | os.PathLike[str] | None = None,
                 make_default: bool = False, note: str | None = None, repeats: int = 3,
                 timing_shape: tuple[int, int] = (512, 768)) -> zoo.ModelInfo:
    """Write ``<name>.pt`` (only the fine-tuned decoder tensors + the base's sha256) and its registry entry
    (``delta_of`` = the base); returns its ModelInfo. The base must be the installed weights it was trained on."""
    from .export import synthetic_image
    from .train_ctx import side_by_side_speed

    ck = torch.load(Path(checkpoint), map_location="cpu", weights_only=False)
    cfg = ck["config"]
    d = zoo.weights_dir(wdir)
    binfo = zoo.model_info(cfg["base"], d)
    if binfo.sha256 != cfg["base_sha256"]:
        raise ModelError(f"{checkpoint} was trained on other {binfo.name} weights than the installed ones")
    if binfo.delta_of:
        raise ModelError(f"{binfo.name} is itself a delta model; fine-tune from its base {binfo.delta_of}")
    arch = {"N": binfo.N, "M": binfo.M, "lambdas": list(binfo.lambdas),
            **({"context": binfo.context} if binfo.context else {}), **({"Ns": cfg["Ns"]} if cfg.get("Ns") else {})}
    state = {k: v.detach().float().contiguous() for k, v in ck["decoder"].items()}
    # timed (and shown to fit its base) in memory, before anything is written
    base_codec = zoo.load_codec(binfo.name, d)[0]
    speed = side_by_side_speed(zoo.with_decoder(base_codec, state, cfg.get("Ns")), base_codec, binfo,
                               synthetic_image(*timing_shape), repeats)
    buf = io.BytesIO()
    torch.save({"format": zoo.WEIGHTS_FORMAT, "architecture": arch, "state_dict": state,
                "delta_of": {"name": binfo.name, "version": binfo.version, "sha256": binfo.sha256}}, buf)
    fname = f"{name}.pt"
    atomic_write_bytes(d / fname, buf.getvalue())
    os.chmod(d / fname, 0o644)
    sha = zoo.sha256_file(d / fname)
    reg = zoo.read_registry(d)
    old = reg["models"].get(name)
    ver = 1 if old is None else int(old["version"]) + (0 if old.get("sha256") == sha else 1)
    base_entry = reg["models"][binfo.name]
    reg["models"][name] = {
        "version": ver, "file": fname, "sha256": sha, "bytes": len(buf.getvalue()), "architecture": arch,
        "delta_of": binfo.name, "qualities": len(binfo.lambdas),
        "decode_ms_per_mp": speed["decode_ms_per_mp"], "encode_ms_per_mp": speed["encode_ms_per_mp"],
        "timing": speed, "ood_stats": base_entry.get("ood_stats") or f"{binfo.name}.ood.json",
        "provenance": {
            "paper": "decoder fine-tune on hard-quantised latents (Minnen & Singh 2020, arXiv 2007.08739) of "
                     f"the frozen {binfo.name}" + (" with an MSE + MS-SSIM objective (Wang et al. 2003)"
                                                   if cfg["loss"] == "perceptual" else ""),
            "base": {"name": binfo.name, "version": binfo.version, "sha256": binfo.sha256},
            "objective": cfg["loss"], "alpha": cfg.get("alpha"), "tensors": sorted(state),
            "synthesis_width": cfg.get("Ns") or binfo.N,
            "steps": ck["step"], "train_seconds": round(float(ck["elapsed_s"])),
            "train_dir": cfg["train_dir"], "train_images": cfg["train_images"],
            "train_list_sha256": cfg["train_list_sha256"],
            "training": {k: cfg.get(k) for k in ("batch", "crop", "lr", "lr_min", "warmup", "seed", "val_dir")},
            "validation_psnr_per_quality": {"first": next((h["val_psnr"] for h in ck["history"] if "val_psnr" in h),
                                                          None),
                                            "last": next((h["val_psnr"] for h in reversed(ck["history"])
                                                          if "val_psnr" in h), None)},
            "note": note, "exported_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "software": {"torch": torch.__version__},
        },
    }
    if make_default:
        reg["default"] = name
    zoo.write_registry(reg, d)
    print(f"exported {checkpoint} (step {ck['step']}, {cfg['loss']}) as {name} v{ver} = {binfo.name} + "
          f"{len(state)} decoder tensors ({len(buf.getvalue())} bytes, sha256 {sha[:16]}…)")
    return zoo.model_info(name, d)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inverity.stages.learned.train_dec", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--base", default=None)
    t.add_argument("--loss", default="mse", choices=("mse", "perceptual"))
    t.add_argument("--alpha", type=float, default=0.5)
    t.add_argument("--Ns", type=int, default=None, help="widen the synthesis to this many hidden channels first")
    t.add_argument("--max-minutes", type=float, default=40.0)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=5e-5)
    t.add_argument("--val", type=Path, default=None)
    t.add_argument("--val-every", type=int, default=500)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--device", default="cpu", help="cpu, or cuda on a lent GPU")
    t.add_argument("--qualities", default=None, help="1-based rate points to train on, comma-separated (default all)")
    e = sub.add_parser("export")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--name", required=True)
    e.add_argument("--default", action="store_true")
    e.add_argument("--note", default=None)
    a = p.parse_args(argv)
    if a.cmd == "export":
        export_delta(a.checkpoint, a.name, make_default=a.default, note=a.note)
    if a.cmd == "train":
        torch.set_num_threads(a.threads)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        res = train(a.data, a.out, base=a.base, loss=a.loss, alpha=a.alpha, Ns=a.Ns, max_minutes=a.max_minutes,
                    batch=a.batch, lr=a.lr, val=a.val, val_every=a.val_every, device=a.device,
                    qualities=tuple(int(v) for v in a.qualities.split(",")) if a.qualities else None)
        print(f"trained {res['step']} steps -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
