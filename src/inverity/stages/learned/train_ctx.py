"""Train the checkerboard context (:mod:`.context`) on a frozen zoo model, and export it as a new zoo entry.

Because g_a, g_s, h_a, h_s and the gains stay frozen, ŷ only moves within its quantisation step (non-anchors are
rounded around the context's μ) and the distortion stays statistically the same: training is rate-only and needs
no synthesis at all (the Kodak benchmark measures both axes). Steps::

    python -m inverity.stages.learned.train_ctx cache  --data ../shared/datasets/train --out checkpoints/ctx_cache.pt
    python -m inverity.stages.learned.train_ctx train  --cache checkpoints/ctx_cache.pt --out checkpoints/ctx.pt \\
        --max-minutes 40
    python -m inverity.stages.learned.train_ctx export checkpoints/ctx.pt --name hp-ctx [--default]

``cache`` runs the base model's analysis g_a once per training crop (8 flips/transpositions of a 256×256 crop
per image, ungained, float32) and keeps the latents; ``train`` then draws latents and a quality per sample,
applies the gain, runs h_a/h_s without gradients and trains only the context to minimise the non-anchor rate
*relative to the hyperprior's own non-anchor rate on the same sample* (so each quality weighs the same, as in a
BD-rate), with additive uniform noise as the rate proxy. ``export`` writes ``<name>.pt`` = the base weights file's
tensors + the context parameters under ``context.``, with its own sha256, version and provenance (the base
model's name and sha256 included).
"""
from __future__ import annotations

import argparse
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

from ..._atomic import atomic_write_bytes
from ...errors import ModelError
from ...formats import walked_extensions
from . import zoo
from .context import CONTEXT_KIND, PREFIX, CheckerboardCodec, CheckerboardContext, anchor_mask, context_params
from .model import LIKELIHOOD_MIN, ScaleHyperprior, gaussian_likelihood

__all__ = ["build_cache", "train", "export_ctx", "main"]

CROP = 256


def _read(path: Path) -> np.ndarray:
    """RGB pixels through the one loader (:func:`inverity.image.load`)."""
    from ...image import load

    a = load(path).pixels
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


@torch.no_grad()
def build_cache(data: Path, out: Path, base: str = zoo.DEFAULT_MODEL, seed: int = 0) -> int:
    """Ungained latents g_a(x) of 8 dihedral variants of one random 256² crop per image in ``data``."""
    model, info = zoo.load_model(base)
    rng = np.random.default_rng(seed)
    files = sorted(p for p in data.iterdir() if p.suffix.lower() in walked_extensions())
    lat: list[torch.Tensor] = []
    t0 = time.time()
    for n, p in enumerate(files):
        a = _read(p)
        if a.dtype != np.uint8 or min(a.shape[:2]) < CROP:
            continue
        y0 = int(rng.integers(0, a.shape[0] - CROP + 1))
        x0 = int(rng.integers(0, a.shape[1] - CROP + 1))
        c = torch.from_numpy(a[y0:y0 + CROP, x0:x0 + CROP]).permute(2, 0, 1).float().div(255.0)
        variants = []
        for t in (c, c.transpose(1, 2)):
            variants += [t, t.flip(2), t.flip(1), t.flip(1).flip(2)]
        lat.append(model.g_a(torch.stack(variants)).contiguous())
        if n % 50 == 0:
            print(f"cache {n}/{len(files)} {time.time() - t0:.0f}s", flush=True)
    y = torch.cat(lat)
    names = "\n".join(p.name for p in files).encode()
    torch.save({"y": y, "base": base, "base_sha256": info.sha256, "train_dir": data.name, "train_images": len(files),
                "train_list_sha256": hashlib.sha256(names).hexdigest(), "crop": CROP, "seed": seed}, out)
    return int(y.shape[0])


def _batch_terms(model: ScaleHyperprior, ctx: CheckerboardContext, y: torch.Tensor, q: torch.Tensor,
                 noise: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample non-anchor bits under the context and under the hyperprior alone (the latter no grad)."""
    m = model.M
    gain, _ = model.gains(q)
    with torch.no_grad():
        yg = y * gain
        hyper = model.h_s(torch.round(model.h_a(yg)))
        means_h, scales_h = hyper.chunk(2, dim=1)
        anchors = torch.from_numpy(anchor_mask(*y.shape[-2:]))[None, None]
        s_a = torch.where(anchors, torch.round(yg - means_h), torch.zeros_like(yg))
        y_t = yg + torch.empty_like(yg).uniform_(-0.5, 0.5) if noise else None
        if y_t is None:
            y_base = torch.round(yg - means_h) + means_h
        else:
            y_base = y_t
        lik_h = gaussian_likelihood(y_base, means_h, scales_h).clamp_min(LIKELIHOOD_MIN)
        non = (~anchors).expand(-1, m, -1, -1).to(y.dtype)
        base_bits = -(torch.log2(lik_h) * non).sum(dim=(1, 2, 3))
    means, scales = context_params(ctx, hyper, s_a)
    y_c = y_t if y_t is not None else torch.round(yg - means) + means
    lik = gaussian_likelihood(y_c, means, scales).clamp_min(LIKELIHOOD_MIN)
    bits = -(torch.log2(lik) * non).sum(dim=(1, 2, 3))
    return bits, base_bits


def train(cache: Path, out: Path, *, base: str = zoo.DEFAULT_MODEL, max_minutes: float = 40.0, batch: int = 16,
          lr: float = 1e-3, lr_min: float = 1e-5, warmup: int = 100, seed: int = 0, save_every_s: float = 300.0,
          resume: bool = True) -> dict[str, Any]:
    """Time-bounded Adam on the context only; cosine decay of the learning rate over the wall-clock budget."""
    torch.manual_seed(seed)
    blob = torch.load(cache, map_location="cpu", weights_only=False)
    model, info = zoo.load_model(base)
    if blob["base_sha256"] != info.sha256:
        raise ModelError(f"{cache} was built from other {base} weights; rebuild the cache")
    y_all: torch.Tensor = blob["y"]
    ctx = CheckerboardContext(model.M)
    opt = torch.optim.Adam(ctx.parameters(), lr=lr)
    step, elapsed, history = 0, 0.0, []
    if resume and out.is_file():
        ck = torch.load(out, map_location="cpu", weights_only=False)
        ctx.load_state_dict(ck["context"])
        opt.load_state_dict(ck["opt"])
        step, elapsed, history = ck["step"], ck["elapsed_s"], ck["history"]
    budget = max_minutes * 60.0
    gen = torch.Generator().manual_seed(seed + step)
    t_start, last_save, run_ratio = time.time() - elapsed, time.time(), None
    k = model.num_qualities

    def save() -> None:
        buf = io.BytesIO()
        torch.save({"context": ctx.state_dict(), "opt": opt.state_dict(), "step": step,
                    "elapsed_s": time.time() - t_start, "history": history,
                    "config": {"base": base, "base_sha256": info.sha256, "batch": batch, "lr": lr, "lr_min": lr_min,
                               "warmup": warmup, "seed": seed, "max_minutes": max_minutes,
                               "train_dir": blob["train_dir"], "train_images": blob["train_images"],
                               "train_list_sha256": blob["train_list_sha256"], "crop": blob["crop"],
                               "latents": int(y_all.shape[0])}}, buf)
        atomic_write_bytes(out, buf.getvalue())

    while time.time() - t_start < budget:
        frac = min(1.0, (time.time() - t_start) / budget)
        cur = lr * min(1.0, (step + 1) / warmup) if step < warmup else \
            lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = cur
        idx = torch.randint(0, y_all.shape[0], (batch,), generator=gen)
        q = torch.randint(0, k, (batch,), generator=gen)
        bits, base_bits = _batch_terms(model, ctx, y_all[idx], q)
        loss = (bits / base_bits.clamp_min(1.0)).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ctx.parameters(), 1.0)
        opt.step()
        step += 1
        ratio = float(bits.detach().sum() / base_bits.sum())
        run_ratio = ratio if run_ratio is None else 0.98 * run_ratio + 0.02 * ratio
        if step % 50 == 0:
            history.append({"step": step, "t_s": round(time.time() - t_start), "lr": cur, "loss": float(loss),
                            "nonanchor_ratio_ema": run_ratio})
            print(json.dumps(history[-1]), flush=True)
        if time.time() - last_save > save_every_s:
            save()
            last_save = time.time()
    save()
    return {"step": step, "history": history}


def side_by_side_speed(codec: Any, base_codec: Any, binfo: zoo.ModelInfo, px: np.ndarray,
                       repeats: int = 3) -> dict[str, Any]:
    """Encode/decode ms per MP of ``codec``, scaled from the base model's registry figures by the CPU-time ratio
    of the two codecs measured alternately on the same image here (1 torch thread).

    A shared, loaded machine inflates absolute times several-fold, but both codecs suffer alike; the registry's
    base figures come from an idle machine, so the ratio carries them over to the new model.
    """
    q = codec.num_qualities // 2
    mp = px.shape[0] * px.shape[1] / 1e6
    times: dict[str, list[float]] = {k: [] for k in ("enc", "dec", "base_enc", "base_dec")}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(repeats):
            for key, c in (("", codec), ("base_", base_codec)):
                t = time.process_time()
                payload = c.encode(px, q)
                times[key + "enc"].append(time.process_time() - t)
                t = time.process_time()
                c.decode(payload, q, px.shape[0], px.shape[1])
                times[key + "dec"].append(time.process_time() - t)
    finally:
        torch.set_num_threads(before)
    med = {k: float(np.median(v)) for k, v in times.items()}
    enc_ratio, dec_ratio = med["enc"] / med["base_enc"], med["dec"] / med["base_dec"]
    return {"encode_ms_per_mp": round((binfo.encode_ms_per_mp or 1000 * med["base_enc"] / mp) * enc_ratio, 1),
            "decode_ms_per_mp": round((binfo.decode_ms_per_mp or 1000 * med["base_dec"] / mp) * dec_ratio, 1),
            "encode_ratio_vs_base": round(enc_ratio, 3), "decode_ratio_vs_base": round(dec_ratio, 3),
            "cpu_ms_per_mp_here": {k: round(1000 * v / mp, 1) for k, v in med.items()},
            "image": f"synthetic {px.shape[1]}x{px.shape[0]}", "quality": q + 1, "repeats": repeats,
            "torch_threads": 1, "note": f"{binfo.name}'s registry figures x the CPU-time ratio measured side by side "
            "(process time, 1 thread) on a shared machine; encode excludes the self-check decode"}


def _load_ctx(checkpoint: Path, m: int) -> tuple[CheckerboardContext, dict[str, Any]]:
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    ctx = CheckerboardContext(m)
    ctx.load_state_dict(ck["context"])
    with torch.no_grad():  # unused taps exactly zero in the file, as in the forward pass
        ctx.context.weight.mul_(ctx.mask)
    return ctx.eval(), ck


def export_ctx(checkpoint: str | os.PathLike[str], name: str = "hp-ctx", *, base: str = zoo.DEFAULT_MODEL,
               wdir: str | os.PathLike[str] | None = None, make_default: bool = False, repeats: int = 3,
               note: str | None = None, timing_shape: tuple[int, int] = (512, 768)) -> zoo.ModelInfo:
    """Write ``<name>.pt`` (base tensors + ``context.*``) and its registry entry; returns its ModelInfo."""
    from .entropy import ZTables
    from .export import synthetic_image

    d = zoo.weights_dir(wdir)
    binfo = zoo.model_info(base, d)
    model, _ = zoo.load_model(base, d)
    base_blob = torch.load(binfo.path, map_location="cpu", weights_only=True)
    ctx, ck = _load_ctx(Path(checkpoint), model.M)
    state = dict(base_blob["state_dict"])
    state.update({PREFIX + k: v.detach().float().contiguous() for k, v in ctx.state_dict().items()})
    arch = {**base_blob["architecture"], "context": CONTEXT_KIND}
    buf = io.BytesIO()
    torch.save({"format": zoo.WEIGHTS_FORMAT, "architecture": arch, "state_dict": state,
                "z_tables": base_blob["z_tables"]}, buf)
    fname = f"{name}.pt"
    atomic_write_bytes(d / fname, buf.getvalue())
    os.chmod(d / fname, 0o644)
    sha = zoo.sha256_file(d / fname)
    codec = CheckerboardCodec(model, ZTables.from_tensors(base_blob["z_tables"]), ctx)
    speed = side_by_side_speed(codec, zoo.load_codec(base, d)[0], binfo, synthetic_image(*timing_shape), repeats)
    n_params = sum(int(v.numel()) for k, v in ctx.state_dict().items() if k != "mask")
    reg = zoo.read_registry(d)
    old = reg["models"].get(name)
    ver = 1 if old is None else int(old["version"]) + (0 if old.get("sha256") == sha else 1)
    cfg = ck.get("config", {})
    hist = ck.get("history") or []
    reg["models"][name] = {
        "version": ver, "file": fname, "sha256": sha, "bytes": len(buf.getvalue()), "architecture": arch,
        "qualities": len(arch["lambdas"]), "decode_ms_per_mp": speed["decode_ms_per_mp"],
        "encode_ms_per_mp": speed["encode_ms_per_mp"], "timing": speed,
        "ood_stats": (reg["models"].get(base) or {}).get("ood_stats") or f"{base}.ood.json",
        "provenance": {
            "paper": "checkerboard context (He et al. 2021, arXiv 2103.15306) on a frozen mean-scale hyperprior "
                     "(Ballé et al. 2018 / Minnen et al. 2018) with gain units (Cui et al. 2021)",
            "base": {"name": base, "version": binfo.version, "sha256": binfo.sha256},
            "context_parameters": n_params, "steps": ck.get("step"),
            "train_seconds": round(float(ck.get("elapsed_s", 0.0))),
            "train_dir": cfg.get("train_dir"), "train_images": cfg.get("train_images"),
            "train_list_sha256": cfg.get("train_list_sha256"),
            "lambda_per_quality": {str(i + 1): lam for i, lam in enumerate(arch["lambdas"])},
            "training": {k: cfg.get(k) for k in ("batch", "lr", "lr_min", "warmup", "seed", "crop", "latents")},
            "objective": "non-anchor rate relative to the hyperprior's (uniform-noise proxy); transforms frozen",
            "training_final": hist[-1] if hist else None, "note": note,
            "exported_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "software": {"torch": torch.__version__},
        },
    }
    if make_default:
        reg["default"] = name
    zoo.write_registry(reg, d)
    print(f"exported {checkpoint} (step {ck.get('step')}) as {name} v{ver} ({n_params} context parameters, "
          f"sha256 {sha[:16]}…); CPU encode {speed['encode_ms_per_mp']} ms/MP, decode {speed['decode_ms_per_mp']} ms/MP")
    return zoo.model_info(name, d)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inverity.stages.learned.train_ctx", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--base", default=zoo.DEFAULT_MODEL)
    t = sub.add_parser("train")
    t.add_argument("--cache", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--base", default=zoo.DEFAULT_MODEL)
    t.add_argument("--max-minutes", type=float, default=40.0)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--threads", type=int, default=1)
    e = sub.add_parser("export")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--name", default="hp-ctx")
    e.add_argument("--base", default=zoo.DEFAULT_MODEL)
    e.add_argument("--weights-dir", default=None)
    e.add_argument("--default", action="store_true")
    e.add_argument("--note", default=None)
    a = p.parse_args(argv)
    if a.cmd == "cache":
        torch.set_num_threads(1)
        print(f"{build_cache(a.data, a.out, a.base)} latents -> {a.out}")
    elif a.cmd == "train":
        torch.set_num_threads(a.threads)
        train(a.cache, a.out, base=a.base, max_minutes=a.max_minutes, batch=a.batch, lr=a.lr)
    else:
        export_ctx(a.checkpoint, a.name, base=a.base, wdir=a.weights_dir, make_default=a.default, note=a.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
