"""Decoder fine-tunes (``train_dec``) and delta models in the zoo: the trainer sees the latents exactly as the
stream carries them, an exported delta decodes its base's bitstream under its own name, and a delta refuses a
base it was not built on, a tampered base, or tensors its base does not have."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata

import inverity.stages.learned.zoo as zoo
from inverity.container import unpack
from inverity.errors import ModelError
from inverity.image import Image, save
from inverity.stages.base import get_stage
from inverity.stages.learned import train_dec

BASE = "hp-ctx"
pytestmark = [pytest.mark.skipif(BASE not in [m.name for m in zoo.list_models()], reason=f"{BASE} not in the zoo"),
              pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (short) fine-tune from two photos that packages ship: 3 s of Adam at a visible learning rate."""
    root = tmp_path_factory.mktemp("dec")
    data = root / "train"
    data.mkdir()
    save(Image(np.ascontiguousarray(skdata.astronaut())), data / "astronaut.png")
    save(Image(np.ascontiguousarray(skdata.chelsea())), data / "chelsea.png")
    ck = root / "ck.pt"
    torch.set_num_threads(1)
    res = train_dec.train(data, ck, base=BASE, max_minutes=0.05, batch=2, lr=2e-3, warmup=1)
    assert res["step"] >= 1 and ck.is_file()
    return ck


@pytest.fixture()
def zdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "weights"
    shutil.copytree(zoo.weights_dir(), d)
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(d))
    zoo.clear_cache()
    yield d
    zoo.clear_cache()


def _export(ck: Path, d: Path, name: str = "hp-ctx-t") -> zoo.ModelInfo:
    return train_dec.export_delta(ck, name, wdir=d, repeats=1, timing_shape=(64, 64))


def test_exact_latents_are_what_the_stream_carries() -> None:
    codec, _ = zoo.load_codec(BASE)
    model, _ = zoo.load_model(BASE)
    px = np.ascontiguousarray(skdata.astronaut()[64:192, 128:256])
    x = torch.from_numpy(px).permute(2, 0, 1)[None].float().div(255)
    for q in (1, 6):
        got = train_dec.exact_latents(model, codec.context, x, torch.tensor([q]))
        ref = codec.decode_latents(codec.encode(px, q), 128, 128)
        assert got.shape == ref.shape
        assert float((got.double() - ref).abs().max()) < 1e-3  # float32 vs the stream's float64, same integers


def test_delta_exports_only_decoder_tensors_and_decodes_the_base_stream(trained: Path, zdir: Path) -> None:
    info = _export(trained, zdir)
    assert info.delta_of == BASE
    blob = torch.load(info.path, map_location="cpu", weights_only=True)
    assert set(blob["state_dict"]) and all(k.startswith(train_dec.DECODER_KEYS) for k in blob["state_dict"])
    assert blob["delta_of"]["sha256"] == zoo.model_info(BASE).sha256
    assert info.path.stat().st_size < zoo.model_info(BASE).path.stat().st_size / 4
    img = Image(np.ascontiguousarray(skdata.astronaut()[100:228, 150:278]))
    data, recon = get_stage("learned", quality=6, model=info.name).encode_with_reconstruction(img)
    base_data, base_recon = get_stage("learned", quality=6, model=BASE).encode_with_reconstruction(img)
    header, payload = unpack(data)
    assert header["model"] == info.name and header["weights_sha256"] == info.sha256[:16]
    assert payload == unpack(base_data)[1]  # the same bitstream ...
    assert not np.array_equal(recon.pixels, base_recon.pixels)  # ... decoded by another synthesis
    assert np.array_equal(get_stage("learned").decode(data).pixels, recon.pixels)
    reg = json.loads((zdir / zoo.REGISTRY).read_text())["models"][info.name]
    assert reg["provenance"]["base"]["sha256"] == zoo.model_info(BASE).sha256 and reg["provenance"]["steps"] >= 1


def test_delta_refuses_a_tampered_base(trained: Path, zdir: Path) -> None:
    info = _export(trained, zdir)
    zoo.load_codec(info.name)  # loads and caches both
    base = zoo.model_info(BASE).path
    raw = bytearray(base.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    base.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match=f"weights for model {BASE}: sha256 mismatch"):
        zoo.load_codec(info.name)  # the cached delta is not served: its base changed on disk


def test_delta_refuses_another_base_and_unknown_tensors(trained: Path, zdir: Path) -> None:
    info = _export(trained, zdir)
    blob = torch.load(info.path, map_location="cpu", weights_only=True)

    def rewrite(b: dict) -> None:
        torch.save(b, info.path)
        reg = json.loads((zdir / zoo.REGISTRY).read_text())
        reg["models"][info.name]["sha256"] = zoo.sha256_file(info.path)
        (zdir / zoo.REGISTRY).write_text(json.dumps(reg))
        zoo.clear_cache()

    rewrite({**blob, "delta_of": {**blob["delta_of"], "sha256": "0" * 64}})
    with pytest.raises(ModelError, match="built on hp-ctx weights 000000000000"):
        zoo.load_codec(info.name)
    rewrite({**blob, "state_dict": {**blob["state_dict"], "g_s.9.weight": torch.zeros(1)}})
    with pytest.raises(ModelError, match="incompatible delta tensors"):
        zoo.load_codec(info.name)


def test_export_refuses_a_checkpoint_of_other_base_weights(trained: Path, zdir: Path, tmp_path: Path) -> None:
    ck = torch.load(trained, map_location="cpu", weights_only=False)
    ck["config"]["base_sha256"] = "f" * 64
    bad = tmp_path / "bad.pt"
    torch.save(ck, bad)
    with pytest.raises(ModelError, match="other hp-ctx weights"):
        _export(bad, zdir)
    assert "hp-ctx-t" not in zoo.read_registry(zdir)["models"]


def test_ms_ssim_orders_distortions_and_the_perceptual_loss_trains() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.from_numpy(np.ascontiguousarray(skdata.astronaut()[:192, :192])).permute(2, 0, 1)[None].float() / 255
    small = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    large = (x + 0.10 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    s_small, s_large = float(train_dec.ms_ssim(small, x)), float(train_dec.ms_ssim(large, x))
    assert 1.0 > s_small > s_large > 0.0
    xh = small.clone().requires_grad_(True)
    loss, parts = train_dec._loss(x, xh, "perceptual", 1.0)
    loss.backward()
    assert xh.grad is not None and float(xh.grad.abs().sum()) > 0 and 0 < parts["ms_ssim"] < 1
    with pytest.raises(ModelError, match="unknown decoder fine-tune loss"):
        train_dec.train(Path("."), Path("x.pt"), loss="l1")


def test_training_on_chosen_qualities_records_them(tmp_path: Path) -> None:
    data = tmp_path / "train"
    data.mkdir()
    save(Image(np.ascontiguousarray(skdata.chelsea())), data / "chelsea.png")
    with pytest.raises(ModelError, match=r"qualities \[0, 8\] outside 1..7"):
        train_dec.train(data, tmp_path / "bad.pt", base=BASE, qualities=(0, 8), max_minutes=0.01)
    assert not (tmp_path / "bad.pt").exists()
    ck = tmp_path / "top.pt"
    train_dec.train(data, ck, base=BASE, qualities=(6, 7), max_minutes=0.01, batch=1)
    assert torch.load(ck, map_location="cpu", weights_only=False)["config"]["qualities"] == [6, 7]


def test_delta_chains_and_cycles_are_refused(trained: Path, zdir: Path) -> None:
    info = _export(trained, zdir)
    reg = json.loads((zdir / zoo.REGISTRY).read_text())
    reg["models"]["hp-ctx-u"] = {**reg["models"][info.name], "delta_of": info.name}
    reg["models"]["hp-ctx-self"] = {**reg["models"][info.name], "delta_of": "hp-ctx-self"}
    (zdir / zoo.REGISTRY).write_text(json.dumps(reg))
    zoo.clear_cache()
    for name in ("hp-ctx-u", "hp-ctx-self"):
        with pytest.raises(ModelError, match="is itself a delta model"):
            zoo.load_codec(name)


def test_ood_gate_judges_a_delta_default_with_its_base_evidence(trained: Path, zdir: Path) -> None:
    from inverity.analyse import analyse

    info = _export(trained, zdir)
    px = np.ascontiguousarray(skdata.astronaut())
    ref = analyse(Image(px), model_name=BASE)
    ref.learned_gate()
    got = analyse(Image(px), model_name=info.name)
    got.learned_gate()
    assert got.ood_gate == "spectral+model" and got.in_distribution is not None
    assert got.ood_score == pytest.approx(ref.ood_score) and got.in_distribution == ref.in_distribution


def test_a_widened_decoder_starts_as_its_base_and_ships_as_a_delta(tmp_path: Path, zdir: Path) -> None:
    """``--Ns``: the synthesis widened function-preservingly (step 0 decodes like the base), trained, exported
    with its width in the registry, and decoding the base's bitstream under its own name."""
    from inverity.stages.learned.model import ScaleHyperprior
    from inverity.stages.learned.widen import widen_synthesis

    base_model, _ = zoo.load_model(BASE)
    wide = ScaleHyperprior(base_model.N, base_model.M, base_model.lambdas, Ns=72).eval()
    wide.load_state_dict(widen_synthesis(base_model.state_dict(), 72))
    y = torch.randn(1, base_model.M, 4, 6)
    with torch.no_grad():
        assert torch.allclose(wide.g_s(y), base_model.g_s(y), atol=1e-5)
    data = tmp_path / "train"
    data.mkdir()
    save(Image(np.ascontiguousarray(skdata.astronaut())), data / "astronaut.png")
    ck = tmp_path / "wide.pt"
    train_dec.train(data, ck, base=BASE, Ns=72, max_minutes=0.03, batch=1, lr=2e-3, warmup=1)
    info = train_dec.export_delta(ck, "hp-ctx-w", wdir=zdir, repeats=1, timing_shape=(64, 64))
    assert info.Ns == 72 and info.delta_of == BASE
    assert json.loads((zdir / zoo.REGISTRY).read_text())["models"]["hp-ctx-w"]["architecture"]["Ns"] == 72
    img = Image(np.ascontiguousarray(skdata.astronaut()[200:264, 200:296]))
    enc, recon = get_stage("learned", quality=5, model="hp-ctx-w").encode_with_reconstruction(img)
    assert unpack(enc)[1] == unpack(get_stage("learned", quality=5, model=BASE).encode(img))[1]
    assert np.array_equal(get_stage("learned").decode(enc).pixels, recon.pixels)
    with pytest.raises(ModelError, match="another width"):
        train_dec.train(data, ck, base=BASE, Ns=None, max_minutes=0.01)


def test_decoder_benchmark_compares_a_checkpoint_with_its_base(trained: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.learned_decoders import main as bench_main

    data = tmp_path / "val"
    data.mkdir()
    save(Image(np.ascontiguousarray(skdata.chelsea()[:128, :192])), data / "chelsea.png")
    out = tmp_path / "res.json"
    assert bench_main([str(trained), "--data", str(data), "--limit", "1", "--qualities", "2,7", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["base"] == BASE and res["images"] == ["chelsea.png"]
    base, tuned = res["means"]["base"], res["means"][trained.stem]
    assert set(base) == set(tuned) == {"2", "7"}
    assert base["7"][0] > base["2"][0]  # the higher quality decodes closer, for the base ...
    assert tuned != base                 # ... and the trained decoder decodes differently
    table = capsys.readouterr().out
    assert f"| {trained.stem} | 7 |" in table and "| base | 2 |" in table
