"""Does a learned payload decode to the same pixels on another torch device as on the CPU reference?

The ``.inv`` decoder is defined on the CPU: it runs the hyper-synthesis h_s, the checkerboard context net
(``hp-ctx``, :mod:`.context`) and the synthesis g_s in float64 (:mod:`.entropy`), and the container pins the
sha256 of the reconstruction the encoder verified. Another device (CUDA) can part from that reference in
two places, with very different consequences:

* **h_s (and the context net) → scale indexes.** Each latent's σ is snapped to one of 64 table entries. If
  a device's arithmetic moves one σ across a table edge, the range decoder reads that symbol (and, through
  the coder's state, every later one) with a different model: the rest of the stream is garbage. Counted as
  ``scale_index_mismatches`` (out of ``latents``); ``desynced`` says whether the y stream still decoded. For
  a checkerboard model the count covers both passes: the anchors (σ from h_s) and the non-anchors (σ from
  the context net over h_s's output and the decoded anchors), the latter also alone as
  ``context_index_mismatches`` (out of ``context_latents``). A pass the range decoder never reached (it
  failed before) counts no mismatches.
* **g_s → pixels.** Rounding differences in the synthesis move a pixel by ±1 at most, a legible error the
  reconstruction hash still refuses. Counted as ``pixels_differ_synthesis`` (g_s on the device, fed the
  CPU's exact ŷ) and ``pixels_differ_full`` (every decoder network on the device, the whole decode).

:func:`compare_decode` runs the device decode ``runs`` times, so run-to-run determinism on the device is
reported too (``run_to_run_identical``). ``reference_sha256`` is the CPU reconstruction's hash (what the
``.inv`` header pins; ``None`` where the CPU cannot decode the payload either, ``reference_desynced``).
``benchmarks/cuda_decode.py`` drives it on a GPU machine; on the CPU it checks the CPU against itself,
which must agree exactly.
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .context import (CheckerboardCodec, SecondPass, anchor_mask, decode_two_pass, hyper_indexes, hyper_params,
                      nonanchor_indexes)
from .entropy import (LatentCodec, ZTables, _set_deterministic, decode_y, decode_z, deterministic_cpu, new_decoder,
                      synthesize_pixels)
from .stage import recon_sha256

__all__ = ["compare_decode"]

#: what a range decoder fed the wrong model (or a damaged payload) may raise while reading
_DESYNC = (ValueError, RuntimeError, OverflowError, AssertionError)


def _decode(payload: bytes, tables: ZTables, z_shape: tuple[int, int, int], hyper_fn: Callable[[np.ndarray], Tensor],
            second_pass: SecondPass | None, indexes: list[np.ndarray]) -> Tensor:
    """ŷ' as the decoder computes it, with ``hyper_fn`` as h_s and (checkerboard) ``second_pass`` as the context
    pass; each pass's scale indexes are appended to ``indexes``. Raises what a desynchronised decoder raises."""
    dec = new_decoder(payload)
    hyper = hyper_fn(decode_z(dec, tables, z_shape))
    if second_pass is not None:
        return decode_two_pass(dec, hyper, second_pass, anchor_mask(*hyper.shape[-2:]), indexes)
    idx = hyper_indexes(hyper)
    indexes.append(idx)
    m = hyper.shape[1] // 2
    return torch.from_numpy(decode_y(dec, idx).astype(np.float64)).to(hyper)[None] + hyper[:, :m]


def _mismatches(indexes: list[np.ndarray], reference: list[np.ndarray], passes: int) -> list[int]:
    """Scale-index mismatches per pass (0 for a pass either side never reached)."""
    return [int((indexes[i] != reference[i]).sum()) if i < min(len(indexes), len(reference)) else 0
            for i in range(passes)]


def compare_decode(codec: LatentCodec, payload: bytes, q: int, height: int, width: int, device: str,
                   dtype: torch.dtype = torch.float64, runs: int = 2) -> dict[str, Any]:
    """Decode ``payload`` (0-based quality ``q``) with the decoder's networks on ``device`` in ``dtype``;
    compare to the CPU.

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
    ph, pw = -(-height // 64) * 64, -(-width // 64) * 64
    z_shape = (codec.model.N, ph // 64, pw // 64)
    m, h, w = codec.model.M, ph // 16, pw // 16
    dev = torch.device(device)
    ref_second: SecondPass | None = None  # the context pass (checkerboard models): the codec's, and the device's
    dev_second: SecondPass | None = None
    if isinstance(codec, CheckerboardCodec):
        ref_second = codec._second_pass
        dev_second = functools.partial(nonanchor_indexes, copy.deepcopy(codec._ctx).to(dev, dtype).eval())
    checkerboard = ref_second is not None

    def cpu_hyper(z_hat: np.ndarray) -> Tensor:
        with deterministic_cpu(1):
            return hyper_params(codec._h_s, z_hat)

    # the CPU reference: the codec's own modules, through the steps its decode_latents runs
    ref_idx: list[np.ndarray] = []
    try:
        ref_y: Tensor | None = _decode(payload, codec.tables, z_shape, cpu_hyper, ref_second, ref_idx)
    except _DESYNC:
        ref_y = None
    ref_px = codec.synthesize(ref_y, q, height, width) if ref_y is not None else None

    h_s = copy.deepcopy(codec._h_s).to(dev, dtype).eval()
    g_s = copy.deepcopy(codec._g_s).to(dev, dtype).eval()
    inv_gain = codec._inv_gain[q].to(dev, dtype)
    det_before = torch.are_deterministic_algorithms_enabled()
    warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    _set_deterministic(True, warn_only=True)
    try:
        with torch.no_grad():
            syn = (synthesize_pixels(g_s, ref_y.to(dev, dtype), inv_gain, height, width) if ref_y is not None
                   else None)
            outputs: list[np.ndarray | None] = []
            indexes: list[list[np.ndarray]] = []
            desynced = False
            for _ in range(max(1, runs)):
                indexes.append([])
                try:
                    y = _decode(payload, codec.tables, z_shape, functools.partial(hyper_params, h_s), dev_second,
                                indexes[-1])
                except _DESYNC:  # a desynchronised range decoder may read an impossible escape
                    desynced = True
                    outputs.append(None)
                    continue
                outputs.append(synthesize_pixels(g_s, y, inv_gain, height, width))
    finally:
        _set_deterministic(det_before, warn_only=warn_before)
    per_pass = _mismatches(indexes[0], ref_idx, 2 if checkerboard else 1)
    full = outputs[0]
    shape = ref_px.shape if ref_px is not None else (height, width, 3)
    diff_full = _absdiff(full, ref_px, shape)
    diff_syn = _absdiff(syn, ref_px, shape) if ref_px is not None else np.zeros(shape, np.int16)
    # run to run: the same σ indexes and the same pixels (or the same desynchronised failure) every time
    same_runs = all(len(i) == len(indexes[0]) and all(np.array_equal(a, b) for a, b in zip(i, indexes[0]))
                    for i in indexes) and all(
        (o is None and full is None) or (o is not None and full is not None and np.array_equal(o, full))
        for o in outputs)
    return {
        "device": str(dev), "dtype": str(dtype).replace("torch.", ""), "quality": q + 1,
        "latents": m * h * w,
        "scale_index_mismatches": int(sum(per_pass)), "desynced": desynced,
        "context_latents": m * int((~anchor_mask(h, w)).sum()) if checkerboard else 0,
        "context_index_mismatches": per_pass[1] if checkerboard else 0,
        "pixels": int(np.prod(shape)), "pixels_differ_synthesis": int((diff_syn > 0).sum()),
        "max_abs_diff_synthesis": int(diff_syn.max()),
        "pixels_differ_full": int((diff_full > 0).sum()), "max_abs_diff_full": int(diff_full.max()),
        "identical": bool(full is not None and ref_px is not None and np.array_equal(full, ref_px)),
        "run_to_run_identical": bool(same_runs),
        "reference_desynced": ref_px is None,
        "reference_sha256": recon_sha256(ref_px) if ref_px is not None else None,
    }


def _absdiff(a: np.ndarray | None, ref: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """|a − ref| per sample (int16); 255 everywhere when either side has no pixels (its decode failed)."""
    if a is None or ref is None:
        return np.full(shape, 255, np.int16)
    return np.abs(a.astype(np.int16) - ref.astype(np.int16))
