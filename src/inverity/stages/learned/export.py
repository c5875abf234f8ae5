"""Export a training checkpoint into the model zoo — one command::

    python -m inverity.stages.learned.export checkpoints/learned.pt --name hp-gain \\
        [--val-dir ../shared/datasets/validation --val-limit 8] [--weights-dir DIR] [--default]

What it does, in order:

1. loads the checkpoint read-only (a training checkpoint with ``"model"``/``"config"``/``"step"``, or a bare
   state dict as written by ``train.export_weights``); the architecture (N, M) is read from the tensor shapes;
2. tabulates the factorized prior of ẑ in float64 (:func:`~inverity.stages.learned.entropy.tabulate_z`) so the
   tables travel *with* the weights, covered by their sha256;
3. writes ``weights/<name>.pt`` (fp32 tensors, loadable with ``torch.load(weights_only=True)``) atomically and
   computes its sha256;
4. measures encode and decode time per megapixel on a synthetic 768×512 image on this CPU (the router's
   decode budget reads ``decode_ms_per_mp``);
5. optionally measures real bpp (payload + container bytes) and PSNR per quality on ``--val-dir``
   (validation images only: Kodak is for benchmarks, never for model selection);
6. records provenance (checkpoint step, training-list hash, λ per quality, validation) and updates
   ``registry.json``; a name that already exists with different weights gets ``version + 1``.

Golden ``.inv`` fixtures are tied to the weights; after a re-export regenerate them with
``INVERITY_REGEN_FIXTURES=1 python -m pytest tests/test_learned.py``.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..._atomic import atomic_write_bytes
from ...errors import ModelError
from . import zoo
from .entropy import LatentCodec, tabulate_z
from .model import LAMBDAS, ScaleHyperprior

__all__ = ["export", "synthetic_image", "measure_speed", "measure_rd", "main"]


def _pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def synthetic_image(height: int = 512, width: int = 768, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like RGB test image: smooth gradients, hard edges, texture and noise.

    Examples
    --------
    >>> a = synthetic_image(64, 96)
    >>> a.shape, a.dtype, bool((a == synthetic_image(64, 96)).all())
    ((64, 96, 3), dtype('uint8'), True)
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 0.5 + 0.4 * np.sin(xx / width * 3.0 + 0.5) * np.cos(yy / height * 2.0)
    g = 0.3 + 0.5 * yy / height
    b = 0.6 - 0.4 * xx / width
    img = np.stack([r, g, b], axis=2)
    disc = (xx - 0.6 * width) ** 2 + (yy - 0.4 * height) ** 2 < (0.2 * height) ** 2
    img[disc] = [0.9, 0.8, 0.2]
    stripes = (xx < 0.3 * width) & (yy > 0.6 * height)
    img[stripes] *= (0.75 + 0.25 * np.sign(np.sin(xx[stripes] / 3.0)))[:, None]
    img += rng.normal(0.0, 0.02, img.shape)
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def measure_speed(codec: LatentCodec, pixels: np.ndarray | None = None, quality_index: int | None = None,
                  repeats: int = 3) -> dict[str, Any]:
    """Median encode and decode time in ms per megapixel (payload only; the container adds ~nothing)."""
    px = synthetic_image() if pixels is None else pixels
    q = codec.num_qualities // 2 if quality_index is None else quality_index
    mp = px.shape[0] * px.shape[1] / 1e6
    enc, dec = [], []
    payload = b""
    for _ in range(repeats):
        t = time.perf_counter()
        payload = codec.encode(px, q)
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        codec.decode(payload, q, px.shape[0], px.shape[1])
        dec.append(time.perf_counter() - t)
    return {"encode_ms_per_mp": round(1000 * statistics.median(enc) / mp, 1),
            "decode_ms_per_mp": round(1000 * statistics.median(dec) / mp, 1),
            "image": f"synthetic {px.shape[1]}x{px.shape[0]}", "quality": q + 1, "repeats": repeats,
            "torch_threads": torch.get_num_threads(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "note": "encode includes only the forward pass and entropy coding, not the self-check decode"}


def measure_rd(codec: LatentCodec, images: list[np.ndarray], container_bytes: int) -> list[dict[str, Any]]:
    """Mean real bpp (payload + ``container_bytes``) and PSNR per quality over ``images`` (uint8 RGB)."""
    rows = []
    for q in range(codec.num_qualities):
        bpp, psnr = [], []
        for a in images:
            payload = codec.encode(a, q)
            rec = codec.decode(payload, q, a.shape[0], a.shape[1])
            bpp.append(8 * (len(payload) + container_bytes) / (a.shape[0] * a.shape[1]))
            mse = float(np.mean((rec.astype(np.float64) - a) ** 2))
            psnr.append(10 * math.log10(255**2 / max(mse, 1e-10)))
        rows.append({"quality": q + 1, "bpp": round(float(np.mean(bpp)), 4), "psnr": round(float(np.mean(psnr)), 3)})
    return rows


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:  # a bare state dict loads safely; a training checkpoint also holds RNG state (plain Python objects)
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001
        blob = torch.load(path, map_location="cpu", weights_only=False)  # our own local checkpoint file
    if isinstance(blob, dict) and isinstance(blob.get("model"), dict):
        meta = {k: blob.get(k) for k in ("step", "config", "train_hash", "train_count", "history")}
        return blob["model"], meta
    if isinstance(blob, dict) and all(isinstance(v, torch.Tensor) for v in blob.values()):
        side = path.with_suffix(".json")
        prov = json.loads(side.read_text()) if side.is_file() else {}
        meta = {"step": prov.get("steps"), "config": prov, "train_hash": prov.get("train_list_sha256"),
                "train_count": prov.get("train_images"),
                "history": [prov["validation"]] if prov.get("validation") else []}
        return blob, meta
    raise ModelError(f"{path}: neither a training checkpoint nor a state dict")


def export(checkpoint: str | os.PathLike[str], name: str = zoo.DEFAULT_MODEL, *,
           wdir: str | os.PathLike[str] | None = None, val_dir: str | os.PathLike[str] | None = None,
           val_limit: int = 8, make_default: bool = False, repeats: int = 3, quiet: bool = False,
           note: str | None = None,
           timing_shape: tuple[int, int] = (512, 768)) -> zoo.ModelInfo:
    """Export ``checkpoint`` as model ``name`` into the zoo; returns the registered :class:`~zoo.ModelInfo`.

    ``timing_shape`` (height, width) is the synthetic image the CPU timings are measured on (tests use a
    small one; the registry's numbers come from the default 768×512).
    """
    ckpt = Path(checkpoint)
    state, meta = _read_checkpoint(ckpt)
    state = {k: v.detach().to(torch.float32).cpu().contiguous() for k, v in state.items()}
    try:
        n, m = int(state["g_a.0.weight"].shape[0]), int(state["g_a.6.weight"].shape[0])
    except KeyError as exc:
        raise ModelError(f"{ckpt}: not a ScaleHyperprior state dict (no {exc})") from None
    cfg = meta.get("config") or {}
    ladder = cfg.get("lambdas") or (cfg.get("architecture") or {}).get("lambdas") or LAMBDAS
    lambdas = tuple(float(v) for v in (ladder.split(",") if isinstance(ladder, str) else ladder))
    if state["log_gain"].shape[0] != len(lambdas):
        raise ModelError(f"{ckpt}: {state['log_gain'].shape[0]} gain rows but {len(lambdas)} λ in its ladder "
                         f"{list(lambdas)}")
    model = ScaleHyperprior(n, m, lambdas)
    model.load_state_dict(state, strict=True)
    model.eval()
    tables = tabulate_z(model.prior)
    arch = {"N": n, "M": m, "lambdas": list(lambdas)}
    buf = io.BytesIO()
    torch.save({"format": zoo.WEIGHTS_FORMAT, "architecture": arch, "state_dict": model.state_dict(),
                "z_tables": tables.to_tensors()}, buf)
    blob = buf.getvalue()
    d = zoo.weights_dir(wdir)
    d.mkdir(parents=True, exist_ok=True)
    fname = f"{name}.pt"
    atomic_write_bytes(d / fname, blob)
    os.chmod(d / fname, 0o644)  # package data: readable by everyone (the atomic temp file was 0600)
    sha = zoo.sha256_file(d / fname)

    codec = LatentCodec(model, tables)
    speed = measure_speed(codec, synthetic_image(*timing_shape), repeats=repeats)
    validation: dict[str, Any] | None = None
    if val_dir:
        from ...container import pack
        from .train import load_folder

        imgs, names = load_folder(Path(val_dir))
        hdr = {"codec_id": "learned", "model": name, "model_version": 1, "quality": 1, "shape": [512, 768, 3],
               "dtype": "uint8", "package_version": _pkg_version("inverity"), "weights_sha256": sha,
               "recon_sha256": sha}
        overhead = len(pack(hdr, b"")) + 1  # + a 2-byte payload length
        validation = {"dataset": Path(val_dir).name, "images": names[:val_limit],
                      "rows": measure_rd(codec, imgs[:val_limit], overhead),
                      "note": "real .inv bytes (payload + container), PSNR on 8-bit RGB"}

    reg = zoo.read_registry(d)
    old = reg["models"].get(name)
    ver = 1 if old is None else int(old["version"]) + (0 if old.get("sha256") == sha else 1)
    history = meta.get("history") or []
    config = meta.get("config") or {}
    reg["models"][name] = {
        "version": ver, "file": fname, "sha256": sha, "bytes": len(blob), "architecture": arch,
        "qualities": len(lambdas), "decode_ms_per_mp": speed["decode_ms_per_mp"],
        "encode_ms_per_mp": speed["encode_ms_per_mp"], "timing": speed, "ood_stats": f"{name}.ood.json",
        "provenance": {
            "paper": "Ballé et al. 2018 / Minnen et al. 2018 mean-scale hyperprior (no context model), "
                     "gain units after Cui et al. 2021",
            "checkpoint": ckpt.name, "steps": meta.get("step"),
            "train_dir": Path(str(config.get("train_dir", ""))).name or None,
            "train_images": meta.get("train_count"), "train_list_sha256": meta.get("train_hash"),
            "lambda_per_quality": {str(i + 1): lam for i, lam in enumerate(lambdas)},
            "training": {k: config.get(k) for k in ("steps", "batch", "crop", "lr", "lr_min", "warmup", "seed",
                                                    "decay_start", "procs", "init") if k in config},
            "note": note,
            "previous": None if old is None or old.get("sha256") == sha else {
                "version": old.get("version"), "sha256": old.get("sha256"),
                "steps": (old.get("provenance") or {}).get("steps")},
            "training_validation": history[-1] if history else None,
            "validation": validation,
            "z_tables": {"tail_mass": 1e-9, "min_len": int(tables.lengths.min()),
                         "max_len": int(tables.lengths.max())},
            "exported_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "software": {"inverity": _pkg_version("inverity"), "torch": torch.__version__,
                         "constriction": _pkg_version("constriction")},
        },
    }
    if make_default or "default" not in reg:
        reg["default"] = name
    reg.setdefault("format", 1)
    zoo.write_registry(reg, d)
    info = zoo.model_info(name, d)
    if not quiet:
        print(f"exported {ckpt} (step {meta.get('step')}) as {name} v{ver}: {d / fname} "
              f"({len(blob) / 1e6:.1f} MB, sha256 {sha[:16]}…)")
        print(f"CPU: encode {speed['encode_ms_per_mp']} ms/MP, decode {speed['decode_ms_per_mp']} ms/MP "
              f"({speed['torch_threads']} torch threads)")
        for row in (validation["rows"] if validation else []):
            print(f"  q{row['quality']}: {row['bpp']:.3f} bpp  {row['psnr']:.2f} dB")
        if old is not None and old.get("sha256") != sha:
            print("weights changed: regenerate golden fixtures with "
                  "INVERITY_REGEN_FIXTURES=1 python -m pytest tests/test_learned.py")
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inverity.stages.learned.export",
                                description="Export a training checkpoint into the learned-model zoo.")
    p.add_argument("checkpoint", help="training checkpoint (.pt) or bare state dict")
    p.add_argument("--name", default=zoo.DEFAULT_MODEL, help=f"model name (default {zoo.DEFAULT_MODEL})")
    p.add_argument("--weights-dir", default=None, help="zoo folder (default: the package's weights/)")
    p.add_argument("--val-dir", default=None, help="validation images for real bpp/PSNR per quality")
    p.add_argument("--val-limit", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3, help="timing repeats")
    p.add_argument("--default", action="store_true", help="make this the registry's default model")
    p.add_argument("--note", default=None, help="free text kept in the provenance (e.g. the training lineage)")
    a = p.parse_args(argv)
    export(a.checkpoint, a.name, wdir=a.weights_dir, val_dir=a.val_dir, val_limit=a.val_limit,
           make_default=a.default, repeats=a.repeats, note=a.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
