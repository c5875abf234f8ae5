"""The cross-device decode check (:mod:`inverity.stages.learned.crossdevice`) on the default ``hp-ctx`` model: the
CPU against itself agrees exactly, float32 reports its numbers consistently, the checkerboard's second pass is
counted on its own, and a damaged payload is reported, never raised. CPU only (the GPU run is
``benchmarks/cuda_decode.py``)."""
from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from skimage import data as skdata

import inverity.stages.learned.context as context
import inverity.stages.learned.crossdevice as crossdevice
import inverity.stages.learned.zoo as zoo
from inverity.stages.learned.crossdevice import compare_decode
from inverity.stages.learned.stage import recon_sha256

CTX = "hp-ctx"
pytestmark = [pytest.mark.skipif(CTX not in {m.name for m in zoo.list_models()}, reason="no hp-ctx in the zoo"),
              pytest.mark.usefixtures("one_torch_thread")]
Q = 2


@pytest.fixture(scope="module")
def case() -> tuple[context.CheckerboardCodec, np.ndarray, bytes]:
    codec, _ = zoo.load_codec(CTX)
    assert isinstance(codec, context.CheckerboardCodec)
    px = np.ascontiguousarray(skdata.astronaut()[100:164, 180:244, :3])  # 64×64
    return codec, px, codec.encode(px, Q)


def _consistent(r: dict) -> None:
    assert r["identical"] == (r["pixels_differ_full"] == 0 and not r["desynced"] and not r["reference_desynced"])
    assert 0 <= r["context_index_mismatches"] <= r["scale_index_mismatches"] <= r["latents"]
    assert 0 < r["context_latents"] < r["latents"] and r["pixels"] == 64 * 64 * 3
    assert 0 <= r["pixels_differ_full"] <= r["pixels"] and 0 <= r["pixels_differ_synthesis"] <= r["pixels"]
    assert (r["max_abs_diff_full"] > 0) == (r["pixels_differ_full"] > 0)
    assert (r["max_abs_diff_synthesis"] > 0) == (r["pixels_differ_synthesis"] > 0)


def test_default_model_cpu_float64_agrees_with_itself(case: tuple) -> None:
    codec, px, payload = case
    r = compare_decode(codec, payload, Q, 64, 64, "cpu", torch.float64)
    _consistent(r)
    assert r["identical"] and r["run_to_run_identical"] and not r["desynced"]
    assert r["scale_index_mismatches"] == 0 and r["context_index_mismatches"] == 0
    assert r["pixels_differ_full"] == 0 and r["pixels_differ_synthesis"] == 0
    assert r["latents"] == codec.model.M * 4 * 4 and r["context_latents"] == r["latents"] // 2
    # the reference is the decoder's own reconstruction (what the .inv header pins)
    assert r["reference_sha256"] == recon_sha256(codec.decode(payload, Q, 64, 64))


def test_default_model_cpu_float32_reports_its_numbers(case: tuple) -> None:
    codec, _, payload = case
    r = compare_decode(codec, payload, Q, 64, 64, "cpu", torch.float32, runs=2)
    _consistent(r)
    assert r["dtype"] == "float32" and r["quality"] == Q + 1 and r["run_to_run_identical"]
    assert r["identical"] == (r["pixels_differ_full"] == 0)


def test_context_pass_mismatches_are_counted_on_their_own(case: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """A device whose context net gives wider σ: the anchors still agree, the non-anchors' indexes do not."""
    codec, _, payload = case
    real = context.nonanchor_indexes

    def wider(ctx: context.CheckerboardContext, hyper: torch.Tensor, s: np.ndarray,
              anchors: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        means, idx = real(ctx, hyper, s, anchors)
        return means, np.minimum(idx + 3, 63)

    monkeypatch.setattr(crossdevice, "nonanchor_indexes", wider)  # the device's copy only; the CPU path is the codec's
    r = compare_decode(codec, payload, Q, 64, 64, "cpu", torch.float64)
    _consistent(r)
    assert r["context_index_mismatches"] > 0
    assert r["scale_index_mismatches"] == r["context_index_mismatches"]  # no anchor mismatch
    assert r["desynced"] or r["pixels_differ_full"] > 0
    assert r["pixels_differ_synthesis"] == 0 and not r["identical"]


def test_damaged_payload_is_reported_not_raised(case: tuple) -> None:
    codec, _, payload = case
    pristine = compare_decode(codec, payload, Q, 64, 64, "cpu", torch.float64, runs=1)
    bad = bytearray(payload)
    bad[len(bad) // 2] ^= 0xFF
    for dtype in (torch.float64, torch.float32):
        r = compare_decode(codec, bytes(bad), Q, 64, 64, "cpu", dtype, runs=1)
        _consistent(r)
        # the flipped byte shows: a decoder that fails, or a reconstruction other than the pristine one
        assert r["desynced"] or r["reference_desynced"] or r["reference_sha256"] != pristine["reference_sha256"]


def test_truncated_payload_is_reported_not_raised(case: tuple) -> None:
    codec, _, payload = case
    pristine = recon_sha256(codec.decode(payload, Q, 64, 64))
    for n in (0, 1, 4, len(payload) // 2):
        r = compare_decode(codec, payload[:n], Q, 64, 64, "cpu", torch.float64, runs=1)
        _consistent(r)
        assert r["reference_sha256"] != pristine
        if n == 1:  # not a whole 32-bit word: the CPU refuses it too, and the device agrees
            assert r["reference_desynced"] and r["desynced"] and r["reference_sha256"] is None
            assert r["run_to_run_identical"] and not r["identical"]


def test_doctests() -> None:
    result = doctest.testmod(crossdevice, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
