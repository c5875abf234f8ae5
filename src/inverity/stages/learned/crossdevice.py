"""Does a learned payload decode to the same pixels on another torch device as on the CPU reference?

The ``.inv`` decoder is defined on the CPU: it runs the hyper-synthesis h_s and the synthesis g_s in float64
(:mod:`.entropy`), and the container pins the sha256 of the reconstruction the encoder verified. Another
device (CUDA) can part from that reference in two places, with very different consequences:

* **h_s → scale indexes.** Each latent's σ is snapped to one of 64 table entries. If a device's arithmetic
  moves one σ across a table edge, the range decoder reads that symbol (and, through the coder's state,
  every later one) with a different model: the rest of the stream is garbage. Counted as
  ``scale_index_mismatches`` (out of ``latents``); ``desynced`` says whether the y stream still decoded.
* **g_s → pixels.** Rounding differences in the synthesis move a pixel by ±1 at most, a legible error the
  reconstruction hash still refuses. Counted as ``pixels_differ_synthesis`` (g_s on the device, fed the
  CPU's exact ŷ) and ``pixels_differ_full`` (h_s and g_s both on the device, the whole decode).

:func:`compare_decode` runs both ``runs`` times, so run-to-run determinism on the device is reported too
(``run_to_run_identical``). ``benchmarks/cuda_decode.py`` drives it on a GPU machine; on the CPU it checks
the CPU against itself, which must agree exactly.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from .entropy import LatentCodec, _set_deterministic, decode_y, decode_z, new_decoder, scale_indexes, synthesize_pixels

__all__ = ["compare_decode"]


def compare_decode(codec: LatentCodec, payload: bytes, q: int, height: int, width: int, device: str,
                   dtype: torch.dtype = torch.float64, runs: int = 2) -> dict[str, Any]:
    """Decode ``payload`` (0-based quality ``q``) with h_s/g_s on ``device`` in ``dtype``; compare to the CPU.

    Examples
    --------
    >>> from .entropy import tabulate_z
    >>> from .model import ScaleHyperprior
    >>> torch.manual_seed(0) and None
    >>> codec = LatentCodec(ScaleHyperprior(8, 8).eval(), tabulate_z(ScaleHyperprior(8, 8).prior))
    >>> px = (np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3)
    >>> r = compare_decode(codec, codec.encode(px, 1), 1, 64, 64, "cpu")
    >>> r["identical"], r["scale_index_mismatches"], r["pixels_differ_full"], r["run_to_run_identical"]
    (True, 0, 0, True)
    """
    from .context import CheckerboardCodec

    if isinstance(codec, CheckerboardCodec):  # its second pass (the context net) is not mirrored here yet
        raise ValueError("compare_decode covers context-free models only (h_s, g_s); "
                         f"{type(codec).__name__} also runs a checkerboard context")
    ph, pw = -(-height // 64) * 64, -(-width // 64) * 64
    z_shape = (codec.model.N, ph // 64, pw // 64)
    # the CPU reference, exactly as the decoder computes it
    dec = new_decoder(payload)
    z_hat = decode_z(dec, codec.tables, z_shape)
    ref_means, ref_idx = codec.entropy_parameters(z_hat)
    ref_y = torch.from_numpy(decode_y(dec, ref_idx).astype(np.float64))[None] + ref_means
    ref_px = codec.synthesize(ref_y, q, height, width)

    dev = torch.device(device)
    h_s = copy.deepcopy(codec._h_s).to(dev, dtype).eval()
    g_s = copy.deepcopy(codec._g_s).to(dev, dtype).eval()
    inv_gain = codec._inv_gain[q].to(dev, dtype)
    det_before = torch.are_deterministic_algorithms_enabled()
    warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    _set_deterministic(True, warn_only=True)
    try:
        with torch.no_grad():
            syn = synthesize_pixels(g_s, ref_y.to(dev, dtype), inv_gain, height, width)
            outputs: list[np.ndarray | None] = []
            indexes: list[np.ndarray] = []
            mismatches, desynced = 0, False
            for _ in range(max(1, runs)):
                out = h_s(torch.from_numpy(z_hat.astype(np.float64))[None].to(dev, dtype))
                means, scales = out.chunk(2, dim=1)
                idx = scale_indexes(scales[0].to("cpu", torch.float64).numpy())
                mismatches = int((idx != ref_idx).sum())
                indexes.append(idx)
                dec = new_decoder(payload)
                decode_z(dec, codec.tables, z_shape)
                try:
                    s = decode_y(dec, idx)
                except Exception:  # a desynchronised range decoder may read an impossible escape
                    desynced = True
                    outputs.append(None)
                    continue
                y = torch.from_numpy(s.astype(np.float64))[None].to(dev, dtype) + means
                outputs.append(synthesize_pixels(g_s, y, inv_gain, height, width))
    finally:
        _set_deterministic(det_before, warn_only=warn_before)
    full = outputs[0]
    diff_full = (np.abs(full.astype(np.int16) - ref_px.astype(np.int16)) if full is not None
                 else np.full(ref_px.shape, 255, np.int16))
    diff_syn = np.abs(syn.astype(np.int16) - ref_px.astype(np.int16))
    # run to run: the same σ indexes and the same pixels (or the same desynchronised failure) every time
    same_runs = all(np.array_equal(i, indexes[0]) for i in indexes) and all(
        (o is None and full is None) or (o is not None and full is not None and np.array_equal(o, full))
        for o in outputs)
    return {
        "device": str(dev), "dtype": str(dtype).replace("torch.", ""), "quality": q + 1,
        "latents": int(ref_idx.size), "scale_index_mismatches": mismatches, "desynced": desynced,
        "pixels": int(ref_px.size), "pixels_differ_synthesis": int((diff_syn > 0).sum()),
        "max_abs_diff_synthesis": int(diff_syn.max()),
        "pixels_differ_full": int((diff_full > 0).sum()), "max_abs_diff_full": int(diff_full.max()),
        "identical": bool(full is not None and np.array_equal(full, ref_px)),
        "run_to_run_identical": bool(same_runs),
    }
