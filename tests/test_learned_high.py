"""A second, wider learned model for the high-rate end (``hp-high``): widening ``hp-gain`` keeps its function,
a wide model round-trips through the stage under its own model id, and another model's decoder refuses its
streams."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata

import inverity.stages.learned.train as train_mod
import inverity.stages.learned.zoo as zoo
from inverity.container import pack, unpack
from inverity.errors import ContainerError
from inverity.image import Image
from inverity.stages.base import get_stage
from inverity.stages.learned.entropy import LatentCodec, tabulate_z
from inverity.stages.learned.model import ScaleHyperprior

pytestmark = [pytest.mark.skipif("hp-gain" not in [m.name for m in zoo.list_models()],
                                reason="hp-gain is not in the zoo"),
              pytest.mark.usefixtures("one_torch_thread")]

#: the high-rate ladder: its first two λ are hp-gain's top two, so those qualities must match hp-gain exactly
HIGH = (0.025, 0.0483, 0.0932, 0.18)



@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut()[100:164, 150:246, :3])


@pytest.fixture(scope="module")
def widened() -> ScaleHyperprior:
    """hp-gain widened to M=192 through the trainer's ``--init`` path (what ``train --M 192 --init`` does)."""
    info = zoo.model_info("hp-gain")
    cfg = train_mod.TrainConfig(train_dir=".", ckpt="/nonexistent/ckpt.pt", init=str(info.path), N=info.N, M=192,
                                lambdas=",".join(map(str, HIGH)))
    torch.manual_seed(0)
    model = ScaleHyperprior(cfg.N, cfg.M, cfg.ladder())
    said: list[str] = []
    train_mod._resume_or_init(cfg, model, torch.optim.Adam(model.parameters()), Path(cfg.ckpt),
                              __import__("random").Random(0), said.append)
    assert any("widened function-preservingly from M=96 to M=192" in s for s in said)
    return model.eval()


def test_widened_init_reproduces_hp_gain_exactly(widened: ScaleHyperprior, pixels: np.ndarray) -> None:
    gain, info = zoo.load_codec("hp-gain")
    wide = LatentCodec(widened, tabulate_z(widened.prior))
    for q_gain, q_wide in ((5, 0), (6, 1)):  # λ 0.025 and 0.0483 in both ladders
        ref = gain.decode(gain.encode(pixels, q_gain), q_gain, *pixels.shape[:2])
        got = wide.decode(wide.encode(pixels, q_wide), q_wide, *pixels.shape[:2])
        assert np.array_equal(ref, got)  # the coded reconstruction, pixel for pixel
        x = train_mod.pad64(torch.from_numpy(pixels).permute(2, 0, 1)[None].float().div(255))
        with torch.no_grad():
            a, b = gain.model(x, torch.tensor([q_gain])), widened(x, torch.tensor([q_wide]))
        assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-5)
        # the old latents' entropy model is untouched: same z, same (μ, σ) for channels 0..95
        ga, _ = gain.model.gains(torch.tensor([q_gain]))
        gw, _ = widened.gains(torch.tensor([q_wide]))
        ya, yb = gain.model.g_a(x) * ga, widened.g_a(x) * gw
        assert torch.equal(ya, yb[:, :96])
        za, zb = torch.round(gain.model.h_a(ya)), torch.round(widened.h_a(yb))
        assert torch.equal(za, zb)
        (ma, sa), (mb, sb) = gain.model.hyper_params(za), widened.hyper_params(zb)
        assert torch.allclose(ma, mb[:, :96], atol=1e-5) and torch.allclose(sa, sb[:, :96], atol=1e-5)


def test_widened_new_channels_get_gradients(widened: ScaleHyperprior, pixels: np.ndarray) -> None:
    """Not a dead saddle: the new latents are not all zero, so the new synthesis inputs (zero at the start) get a
    gradient, and so do the new entropy-model outputs."""
    model = ScaleHyperprior(widened.N, widened.M, widened.lambdas)
    model.load_state_dict(widened.state_dict())
    model.train()
    x = train_mod.pad64(torch.from_numpy(pixels).permute(2, 0, 1)[None].float().div(255))
    out = model(x, torch.tensor([3]))
    (((out["x_hat"] - x) ** 2).mean() * 1000 + out["bits"].sum() / x[0, 0].numel()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert float(grads["g_s.0.weight"][96:].abs().max()) > 0  # the new synthesis inputs
    assert float(grads["g_a.6.weight"][96:].abs().max()) > 0
    assert float(grads["h_s.4.weight"][96:192].abs().max()) > 0 and float(grads["h_s.4.weight"][288:].abs().max()) > 0


@pytest.fixture(scope="module")
def two_model_zoo(widened: ScaleHyperprior, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zoo with hp-gain and a (step-0) hp-high exported next to it."""
    from inverity.stages.learned.export import export

    d = tmp_path_factory.mktemp("zoo")
    info = zoo.model_info("hp-gain")
    reg = json.loads((info.path.parent / zoo.REGISTRY).read_text())
    reg["default"], reg["models"] = "hp-gain", {"hp-gain": reg["models"]["hp-gain"]}   # only what is copied here
    (d / zoo.REGISTRY).write_text(json.dumps(reg))
    shutil.copy2(info.path, d / info.path.name)
    ckpt = d / "high.pt"
    torch.save({"model": widened.state_dict(), "step": 0, "config": {"train_dir": "x/train", "lambdas": list(HIGH)},
                "train_hash": "cd" * 32, "train_count": 1, "history": []}, ckpt)
    export(ckpt, "hp-high", wdir=d, repeats=1, quiet=True, timing_shape=(64, 64))
    return d


def test_hp_high_round_trip_with_its_own_model_id(two_model_zoo: Path, pixels: np.ndarray,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(two_model_zoo))
    info = zoo.model_info("hp-high")
    assert (info.N, info.M, info.lambdas) == (64, 192, HIGH) and zoo.default_model() == "hp-gain"
    stage = get_stage("learned", quality=len(HIGH), model="hp-high")
    assert stage.qualities == (1, 2, 3, 4)
    data, recon = stage.encode_with_reconstruction(Image(pixels))
    header, _ = unpack(data)
    assert (header["model"], header["quality"]) == ("hp-high", 4) and header["weights_sha256"] == info.sha256[:16]
    assert np.array_equal(get_stage("learned").decode(data).pixels, recon.pixels)
    low = get_stage("learned", quality=7, model="hp-gain").encode(Image(pixels))
    assert len(data) > len(low)  # λ 0.18 spends more bytes than hp-gain's top λ 0.0483


def test_hp_gain_decoder_refuses_hp_high_streams(two_model_zoo: Path, pixels: np.ndarray,
                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(two_model_zoo))
    data = get_stage("learned", quality=2, model="hp-high").encode(Image(pixels))
    header, payload = unpack(data)
    gain = zoo.model_info("hp-gain")
    # an hp-high payload presented as hp-gain's (right name, version and digest): hp-gain's decoder reads 96
    # channels where 192 were coded, and the reconstruction hash refuses the result
    forged = pack({**header, "model": "hp-gain", "model_version": gain.version,
                   "weights_sha256": gain.sha256[:16]}, payload)
    with pytest.raises(ContainerError):
        get_stage("learned", model="hp-gain").decode(forged)
    # a stream naming hp-gain with hp-high's digest is refused before decoding
    with pytest.raises(ContainerError, match="weights sha256"):
        get_stage("learned").decode(pack({**header, "model": "hp-gain", "model_version": gain.version}, payload))
    # a zoo without hp-high refuses its streams by name
    only_gain = tmp_path / "only"
    only_gain.mkdir()
    shutil.copy2(gain.path, only_gain / gain.path.name)
    reg = zoo.read_registry(two_model_zoo)
    reg["models"] = {"hp-gain": reg["models"]["hp-gain"]}
    (only_gain / zoo.REGISTRY).write_text(__import__("json").dumps(reg))
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(only_gain))
    with pytest.raises(ContainerError, match="needs learned model 'hp-high'.*not installed; available: hp-gain"):
        get_stage("learned").decode(data)


def test_widen_doctests() -> None:
    import doctest

    import inverity.stages.learned.widen as widen

    result = doctest.testmod(widen, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
