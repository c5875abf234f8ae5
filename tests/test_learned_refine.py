"""Encoder-side latent refinement (SGA): the stream stays an ordinary one for the stock decoder, the estimated
rate drops at equal-or-better distortion, it is deterministic given a seed, and refine=0 is today's encode."""
from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from helpers import assert_config_round_trip, psnr
from skimage import data as skdata

import inverity.stages.learned.refine as refine
import inverity.stages.learned.zoo as zoo
from inverity.image import Image
from inverity.stages.base import get_stage

pytestmark = [pytest.mark.skipif(not zoo.list_models(), reason="no learned model in the zoo"),
              pytest.mark.usefixtures("one_torch_thread")]

STEPS = 30



@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut()[120:184, 180:244, :3])


def _mid_quality() -> int:
    """1-based quality whose λ is nearest 0.013 (mid-high on any ladder the zoo may ship)."""
    lambdas = zoo.model_info().lambdas
    return 1 + int(np.argmin([abs(np.log(lam / 0.013)) for lam in lambdas]))


def test_refine_zero_is_byte_identical_to_the_plain_encode(crop: np.ndarray) -> None:
    img = Image(crop)
    plain = get_stage("learned", quality=3).encode(img)
    assert get_stage("learned", quality=3, refine=0).encode(img) == plain
    assert get_stage("learned", quality=3, refine="fast").encode(img) == plain
    codec, _ = zoo.load_codec()
    payload, res = refine.encode_refined(codec, crop, 2, 0)
    assert payload == codec.encode(crop, 2) and res.steps == 0


def test_refined_stream_decodes_with_the_stock_decoder_and_is_smaller(crop: np.ndarray) -> None:
    q = _mid_quality()
    img = Image(crop)
    plain = get_stage("learned", quality=q).encode(img)
    refined, recon = get_stage("learned", quality=q, refine=STEPS).encode_with_reconstruction(img)
    out = get_stage("learned").decode(refined)          # no refine option: the ordinary decoder, hash checked
    assert np.array_equal(out.pixels, recon.pixels) and out.pixels.shape == crop.shape
    plain_px = get_stage("learned").decode(plain).pixels
    assert len(refined) < len(plain)
    assert psnr(crop, out.pixels) >= psnr(crop, plain_px) - 0.05


def test_estimated_rate_drops_at_equal_or_better_distortion(crop: np.ndarray) -> None:
    codec, _ = zoo.load_codec()
    q = _mid_quality() - 1
    x, y0 = codec.analysis(crop, q)
    flags = [p.requires_grad for p in codec.model.parameters()]
    res = refine.refine_latents(codec.model, x, y0, q, STEPS, height=64, width=64, seed=0)
    assert res.kept
    assert res.bits_after < res.bits_before
    assert res.mse_after <= res.mse_before
    # the shared model is left as found: same requires_grad flags, no gradients accumulated in it
    assert [p.requires_grad for p in codec.model.parameters()] == flags
    assert all(p.grad is None for p in codec.model.parameters())


def test_rd_loss_never_worse_at_any_quality(crop: np.ndarray) -> None:
    """The safeguard: whatever the budget, the coded latents' RD loss is ≤ the unrefined one's."""
    codec, info = zoo.load_codec()
    for q in (0, len(info.lambdas) - 1):
        lam = info.lambdas[q]
        x, y0 = codec.analysis(crop, q)
        res = refine.refine_latents(codec.model, x, y0, q, 3, height=64, width=64, seed=1)
        n = 64 * 64
        assert lam * res.mse_after + res.bits_after / n <= lam * res.mse_before + res.bits_before / n + 1e-9


def test_deterministic_given_a_seed(crop: np.ndarray) -> None:
    img = Image(crop)
    a = get_stage("learned", quality=2, refine=10, seed=3).encode(img)
    b = get_stage("learned", quality=2, refine=10, seed=3).encode(img)
    assert a == b


@pytest.mark.parametrize("bad", [-1, "slow", True, 2.5, refine.MAX_STEPS + 1])
def test_refine_option_validated(bad: object) -> None:
    with pytest.raises(ValueError, match="refine"):
        get_stage("learned", quality=2, refine=bad)


def test_seed_validated_and_config_round_trip() -> None:
    with pytest.raises(ValueError, match="seed"):
        get_stage("learned", quality=2, refine=5, seed=-1)
    assert_config_round_trip(get_stage("learned", quality=2, refine="max", seed=4))
    assert refine.resolve_steps("max") == refine.EFFORT_STEPS["max"]


def test_schedule_matches_the_paper_compressed() -> None:
    # the paper: 2000 steps, τ = 0.5 until step 700, then 0.5·exp(−1e-3·(t − 700))
    for t in (0, 700, 1000, 1999):
        paper = min(0.5, 0.5 * np.exp(-1e-3 * (t - 700)))
        assert refine.temperature(t, 2000) == pytest.approx(paper, rel=1e-9)


def test_sga_round_anneals_to_hard_rounding() -> None:
    gen = torch.Generator().manual_seed(0)
    v = torch.linspace(-3.4, 3.4, 101)
    soft = refine.sga_round(v, 0.5, gen)
    assert torch.all((soft >= torch.floor(v)) & (soft <= torch.ceil(v)))
    cold = refine.sga_round(v, 1e-4, gen)
    assert torch.allclose(cold, torch.round(v), atol=1e-3)


def test_doctests() -> None:
    assert doctest.testmod(refine, raise_on_error=False).failed == 0


def test_only_the_max_effort_spends_encode_time_on_refinement() -> None:
    """The search passes the effort's stage options: ``max`` refines the learned stage's latents (SGA), the
    default efforts do not, and a candidate's own option still wins."""
    from inverity.route import Candidate
    from inverity.search import EFFORTS, stage_options

    learned = Candidate("learned", options={"model": "hp-ctx"})
    assert stage_options(learned, "max") == {"refine": "max", "model": "hp-ctx"}
    for effort in EFFORTS:
        if effort != "max":
            assert "refine" not in stage_options(learned, effort)
    assert stage_options(Candidate("learned", options={"refine": 0}), "max")["refine"] == 0
    assert "refine" not in stage_options(Candidate("avif"), "max")
    from inverity.stages.base import get_stage

    stage = get_stage("learned", quality=3, **stage_options(learned, "max"))
    assert refine.resolve_steps(stage.get_config()["refine"]) == 200
