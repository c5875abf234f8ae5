"""The learned stage: real entropy coding round trips, determinism across thread counts, every refusal with
its own message, the zoo's sha256 check, export, and golden ``.inv`` fixtures decoded forever."""
from __future__ import annotations

import doctest
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_config_round_trip, check_golden, psnr
from skimage import data as skdata

import inverity.stages.learned.crossdevice as crossdevice
import inverity.stages.learned.entropy as entropy
import inverity.stages.learned.stage as stage_mod
import inverity.stages.learned.train as train_mod
import inverity.stages.learned.zoo as zoo
from inverity.container import pack, unpack
from inverity.errors import ContainerError, ModelError, UnknownIdError, UnsupportedInputError
from inverity.image import Image
from inverity.stages.base import get_stage
from inverity.stages.learned.model import LAMBDAS, ScaleHyperprior

pytestmark = [pytest.mark.skipif(not zoo.list_models(), reason="no learned model in the zoo"),
              pytest.mark.usefixtures("one_torch_thread")]



def _crop(name: str, y: int = 100, x: int = 150, h: int = 64, w: int = 96) -> Image:
    return Image(np.ascontiguousarray(getattr(skdata, name)()[y : y + h, x : x + w, :3]))


@pytest.fixture(scope="module")
def astronaut() -> Image:
    return _crop("astronaut")


@pytest.fixture(scope="module")
def chelsea() -> Image:
    return _crop("chelsea", 80, 120, 64, 64)


@pytest.fixture(scope="module")
def stream(astronaut: Image) -> bytes:
    return get_stage("learned", quality=3).encode(astronaut)


def _repack(data: bytes, **changes: object) -> bytes:
    header, payload = unpack(data)
    header.update(changes)
    return pack(header, payload)


# -- round trips ---------------------------------------------------------------------------------------------
def test_round_trip_is_deterministic_and_matches_header(astronaut: Image, stream: bytes) -> None:
    stage = get_stage("learned", quality=3)
    a, b = stage.decode(stream), stage.decode(stream)
    assert a.pixels.shape == astronaut.pixels.shape and a.dtype == np.uint8
    assert np.array_equal(a.pixels, b.pixels)
    header, _ = unpack(stream)
    assert stage_mod.recon_sha256(a.pixels).startswith(header["recon_sha256"])
    assert header["model"] == zoo.model_info().name and header["quality"] == 3
    assert psnr(astronaut, a) > 15.0  # a picture, not noise (provisional weights are weak; see registry)
    data2, recon = stage.encode_with_reconstruction(astronaut)
    assert data2 == stream  # same process, same input: same bytes
    assert np.array_equal(recon.pixels, a.pixels)


def test_bytes_decrease_with_lower_quality(chelsea: Image) -> None:
    sizes = [len(get_stage("learned", quality=q).encode(chelsea)) for q in zoo.model_info().qualities]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes


def test_decode_identical_with_1_and_2_threads(stream: bytes) -> None:
    before = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(get_stage("learned").decode(stream).pixels)  # the header hash is checked inside
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(outs[0], outs[1])
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("shape", [(1, 1), (65, 130)])
def test_any_size_round_trips(shape: tuple[int, int]) -> None:
    px = (np.arange(shape[0] * shape[1] * 3) * 37 % 256).astype(np.uint8).reshape(*shape, 3)
    stage = get_stage("learned", quality=2)
    out = stage.decode(stage.encode(Image(px)))
    assert out.pixels.shape == (*shape, 3)


def test_config_round_trip_and_capabilities() -> None:
    stage = get_stage("learned", quality=5, model=zoo.model_info().name)
    assert_config_round_trip(stage)
    assert_config_round_trip(get_stage("learned"))
    caps = stage.capabilities
    assert caps.learned and not caps.standard and not caps.lossless
    assert caps.extensions == (".inv",) and caps.mime == "application/x-inverity"
    assert stage.quality_range == (1, len(zoo.model_info().lambdas)) and stage.max_abs_error is None
    assert "torch" in stage.library_version() and stage.available()


# -- refusals on the input side ------------------------------------------------------------------------------
@pytest.mark.parametrize("pixels, expect", [
    (np.zeros((8, 8, 1), np.uint8), "8-bit gray image"),
    (np.zeros((8, 8, 4), np.uint8), "rgba image (alpha would be lost)"),
    (np.zeros((8, 8, 3), np.uint16), "16-bit rgb image"),
])
def test_refuses_non_8bit_rgb(pixels: np.ndarray, expect: str) -> None:
    with pytest.raises(UnsupportedInputError, match="learned stage takes 8-bit RGB only") as exc:
        get_stage("learned", quality=2).encode(Image(pixels))
    assert expect in str(exc.value)


@pytest.mark.parametrize("quality", [0, "K+1", -1, "3", True, 2.0])
def test_quality_validated(quality: object) -> None:
    k = len(zoo.model_info().lambdas)
    with pytest.raises(ValueError, match=f"quality must be an integer in 1..{k}"):
        get_stage("learned", quality=k + 1 if quality == "K+1" else quality)


def test_unknown_model_option() -> None:
    with pytest.raises(UnknownIdError, match="unknown learned model 'nope'; available: "):
        get_stage("learned", model="nope")


# -- refusals on the decode side -----------------------------------------------------------------------------
def test_unknown_model_in_stream(stream: bytes) -> None:
    with pytest.raises(ContainerError, match=r"needs learned model 'other' \(version \d+\), which is not installed"):
        get_stage("learned").decode(_repack(stream, model="other"))


def test_model_version_mismatch(stream: bytes) -> None:
    with pytest.raises(ContainerError, match="version 99; installed is version"):
        get_stage("learned").decode(_repack(stream, model_version=99))


def test_weights_digest_mismatch(stream: bytes) -> None:
    with pytest.raises(ContainerError, match="encoded with weights sha256 0000000000000000…"):
        get_stage("learned").decode(_repack(stream, weights_sha256="0" * 64))


def test_reconstruction_hash_mismatch(stream: bytes) -> None:
    with pytest.raises(ContainerError, match="decoded image differs from the encoder's verified reconstruction "
                                             r"\(sha256 0123456789abcdef…, got [0-9a-f]{16}…\): refusing rather "
                                             "than returning a wrong picture; decoder platform differs"):
        get_stage("learned").decode(_repack(stream, recon_sha256="0123456789abcdef"))


@pytest.mark.parametrize("where", [0, 3, 10, -5, -1])
def test_tampered_payload_with_valid_crc_is_refused(stream: bytes, where: int) -> None:
    header, payload = unpack(stream)
    bad = bytearray(payload)
    bad[where] ^= 0x5A
    with pytest.raises(ContainerError):
        get_stage("learned").decode(pack(header, bytes(bad)))


def test_wrong_codec_or_shape_in_header(stream: bytes) -> None:
    with pytest.raises(ContainerError, match="written by stage 'jpeg'"):
        get_stage("learned").decode(_repack(stream, codec_id="jpeg"))
    with pytest.raises(ContainerError, match="cannot produce: uint16"):
        get_stage("learned").decode(_repack(stream, dtype="uint16"))
    with pytest.raises(ContainerError, match="over the limit"):
        get_stage("learned").decode(_repack(stream, shape=[100_000, 100_000, 3]))


@pytest.mark.parametrize("flip", [0, 4, 30, -20, -1])
def test_corrupted_file_refused(stream: bytes, flip: int) -> None:
    bad = bytearray(stream)
    bad[flip] ^= 0x10
    with pytest.raises(ContainerError):
        get_stage("learned").decode(bytes(bad))
    with pytest.raises(ContainerError, match="truncated"):
        get_stage("learned").decode(stream[:-7])


@pytest.fixture
def weights_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the zoo that the stage uses through ``$INVERITY_WEIGHTS_DIR``."""
    src = zoo.weights_dir()
    info = zoo.model_info()
    shutil.copy2(src / zoo.REGISTRY, tmp_path / zoo.REGISTRY)
    shutil.copy2(info.path, tmp_path / info.path.name)
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(tmp_path))
    return tmp_path


def test_altered_weights_refused(stream: bytes, weights_copy: Path) -> None:
    info = zoo.model_info()
    assert info.path.parent == weights_copy
    assert np.array_equal(get_stage("learned").decode(stream).pixels, get_stage("learned").decode(stream).pixels)
    blob = bytearray(info.path.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one bit in the middle of a tensor
    info.path.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match=rf"weights for model {info.name}: sha256 mismatch \(expected "
                                         rf"{info.sha256}, got [0-9a-f]{{64}}\)"):
        get_stage("learned").decode(stream)
    info.path.unlink()
    with pytest.raises(ModelError, match=f"weights for model {info.name}: file .* is missing"):
        get_stage("learned").decode(stream)


def test_malformed_registry_refused(weights_copy: Path) -> None:
    (weights_copy / zoo.REGISTRY).write_text("{not json")
    with pytest.raises(ModelError, match="registry .* is unreadable"):
        zoo.list_models()
    reg = {"models": {"m": {"version": 1, "file": "m.pt"}}}
    (weights_copy / zoo.REGISTRY).write_text(json.dumps(reg))
    with pytest.raises(ModelError, match="registry entry 'm' is malformed"):
        zoo.model_info("m")


# -- the zoo and export ----------------------------------------------------------------------------------------
def test_zoo_facts() -> None:
    info = zoo.model_info()
    assert info.name == zoo.default_model() and len(info.sha256) == 64
    assert info.qualities == tuple(range(1, len(info.lambdas) + 1))
    assert info.decode_ms_per_mp and info.decode_ms_per_mp > 0
    assert info.provenance["train_list_sha256"] and info.provenance["lambda_per_quality"]["1"] == info.lambdas[0]
    owner = info.provenance["base"]["name"] if info.context else info.name  # a context model shares its base's
    assert zoo.ood_stats_path(info.name).name == f"{owner}.ood.json"       # transforms, hence its OOD statistics
    assert info.path.stat().st_size + sum(p.stat().st_size for p in info.path.parent.glob("*.json")) <= 25e6
    model, info2 = zoo.load_model()
    assert isinstance(model, ScaleHyperprior) and info2 == info and not model.training
    assert zoo.load_model()[0] is model  # cached while the file is untouched
    json.dumps(info.to_dict())


def test_export_and_version_bump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inverity.stages.learned.export import export

    torch.manual_seed(1)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": ScaleHyperprior(8, 8).state_dict(), "step": 7, "config": {"train_dir": "x/train"},
                "train_hash": "ab" * 32, "train_count": 3, "history": []}, ckpt)
    zdir = tmp_path / "zoo"
    info = export(ckpt, "tiny", wdir=zdir, repeats=1, quiet=True, timing_shape=(64, 64))
    assert (info.name, info.version, info.N, info.M) == ("tiny", 1, 8, 8)
    assert zoo.sha256_file(zdir / "tiny.pt") == info.sha256
    assert info.provenance["steps"] == 7 and info.provenance["train_images"] == 3
    assert export(ckpt, "tiny", wdir=zdir, repeats=1, quiet=True, timing_shape=(64, 64)).version == 1  # same weights, same version
    state = torch.load(ckpt, weights_only=False)
    state["model"]["log_gain"] += 0.01
    torch.save(state, ckpt)
    assert export(ckpt, "tiny", wdir=zdir, repeats=1, quiet=True, timing_shape=(64, 64)).version == 2
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(zdir))
    img = Image(skdata.chelsea()[:40, :50])
    out = get_stage("learned", quality=1, model="tiny").decode(get_stage("learned", quality=1, model="tiny").encode(img))
    assert out.pixels.shape == img.pixels.shape


# -- entropy coding internals ------------------------------------------------------------------------------------
def test_escape_paths_round_trip() -> None:
    torch.manual_seed(0)
    tables = entropy.tabulate_z(ScaleHyperprior(8, 8).prior)
    assert np.allclose(tables.pmfs.sum(axis=1), 1.0, atol=1e-6)
    z = np.zeros((8, 2, 3), np.int64)
    z[0, 0, 0], z[3, 1, 2], z[7, 0, 1] = 10_000, -123_456, int(tables.offsets[7] - 1)  # all outside the tables
    idx = np.random.default_rng(0).integers(0, 64, size=(5, 4, 4))
    s = np.random.default_rng(1).integers(-3, 4, size=(5, 4, 4))
    s[0, 0, 0], s[1, 2, 3], s[4, 3, 3] = entropy.Y_BOUND, -entropy.Y_BOUND - 1, 2**29 + 5
    enc = entropy.new_encoder()
    assert entropy.encode_z(enc, z, tables) == 3
    assert entropy.encode_y(enc, s, idx) == 3
    dec = entropy.new_decoder(entropy.finish(enc))
    assert np.array_equal(entropy.decode_z(dec, tables, z.shape), z)
    assert np.array_equal(entropy.decode_y(dec, idx), s)
    with pytest.raises(Exception, match="out of the codable range"):
        entropy.encode_y(entropy.new_encoder(), np.array([2**31]), np.array([0]))


def test_tables_survive_serialisation() -> None:
    torch.manual_seed(0)
    t = entropy.tabulate_z(ScaleHyperprior(8, 8).prior)
    back = entropy.ZTables.from_tensors(t.to_tensors())
    assert np.array_equal(back.offsets, t.offsets) and np.array_equal(back.pmfs, t.pmfs)


def test_deterministic_cpu_restores_settings() -> None:
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch._C._get_mkldnn_enabled())
    with pytest.raises(RuntimeError):
        with entropy.deterministic_cpu(1):
            assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
            raise RuntimeError("boom")
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
            torch._C._get_mkldnn_enabled()) == before


def test_scale_indexes_nearest_on_log_scale() -> None:
    t = entropy.SCALE_TABLE
    assert np.array_equal(entropy.scale_indexes(t), np.arange(64))
    assert np.array_equal(entropy.scale_indexes(t * 1.05), np.arange(64))
    assert np.array_equal(entropy.scale_indexes(t[1:] * 0.95), np.arange(1, 64))


def test_golden_fixtures_decode() -> None:
    try:
        check_golden("learned", {"rgb8_q2": ({"quality": 2}, "rgb8"), "rgb8_q5": ({"quality": 5}, "rgb8")})
    except ContainerError as exc:
        pytest.fail(f"golden .inv no longer decodes ({exc}); if the weights were re-exported on purpose, "
                    "regenerate with INVERITY_REGEN_FIXTURES=1 python -m pytest tests/test_learned.py")


@pytest.mark.parametrize("module", [entropy, zoo, stage_mod, train_mod, crossdevice])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_cli_train_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    import imagecodecs

    import inverity.stages.learned.export as export_mod
    from inverity.cli import main

    small = export_mod.synthetic_image
    monkeypatch.setattr(export_mod, "synthetic_image", lambda *a, **k: small(64, 64))  # timing image: keep it quick

    tdir = tmp_path / "train"
    tdir.mkdir()
    for i, name in enumerate(("astronaut", "chelsea")):
        imagecodecs.imwrite(tdir / f"{i}.png", np.ascontiguousarray(getattr(skdata, name)()[:96, :96, :3]))
    zdir = tmp_path / "zoo"
    rc = main(["train", str(tdir), "--ckpt", str(tmp_path / "c.pt"), "--steps", "2", "--batch", "1", "--crop", "64",
               "--N", "8", "--M", "8", "--warmup", "1", "--export", "tiny", "--weights-dir", str(zdir), "--timing-repeats", "1"])
    assert rc == 0, capsys.readouterr()
    assert "exported tiny v1" in capsys.readouterr().out
    assert zoo.model_info("tiny", zdir).provenance["steps"] == 2
    assert main(["train", str(tmp_path / "missing")]) == 2
    assert "inverity: error: training folder" in capsys.readouterr().err


def test_data_parallel_training_keeps_ranks_in_step(tmp_path: Path) -> None:
    """Two single-threaded processes (DistributedDataParallel): the run ends with the requested steps, a
    checkpoint that holds the returned weights, and ranks whose weights agree exactly (train() raises otherwise)."""
    import imagecodecs

    from inverity.stages.learned.train import TrainConfig, train

    tdir = tmp_path / "train"
    tdir.mkdir()
    for i, name in enumerate(("astronaut", "chelsea", "coffee")):
        imagecodecs.imwrite(tdir / f"{i}.png", np.ascontiguousarray(getattr(skdata, name)()[:80, :80, :3]))
    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(train_dir=str(tdir), ckpt=str(ckpt), steps=3, batch=1, crop=64, N=8, M=8, warmup=1,
                      procs=2, ckpt_every=100)
    model = train(cfg)
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] == 3 and state["config"]["procs"] == 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, state["model"][k])


def test_time_bounded_training_stops_on_the_clock_and_validates(tmp_path: Path) -> None:
    """``max_minutes`` ends a run long before ``steps``, with a checkpoint and a final validation at that step."""
    import imagecodecs

    from inverity.stages.learned.train import TrainConfig, train

    tdir = tmp_path / "train"
    tdir.mkdir()
    for i, name in enumerate(("astronaut", "chelsea")):
        imagecodecs.imwrite(tdir / f"{i}.png", np.ascontiguousarray(getattr(skdata, name)()[:80, :80, :3]))
    ckpt = tmp_path / "c.pt"
    cfg = TrainConfig(train_dir=str(tdir), val_dir=str(tdir), ckpt=str(ckpt), steps=1_000_000, batch=1, crop=64,
                      N=8, M=8, warmup=1, max_minutes=0.005, val_every=1_000_000, ckpt_every=1_000_000)
    train(cfg)
    state = torch.load(ckpt, weights_only=False)
    assert 1 <= state["step"] < 1_000_000
    assert state["history"][-1]["step"] == state["step"]
    assert len(state["history"][-1]["val"]) == len(LAMBDAS)


def test_fresh_training_run_is_reproducible(tmp_path: Path) -> None:
    """Two fresh runs with the same seed end with identical weights (the seed is set before the model is built,
    so its initial weights come from it too), and a different seed gives different ones."""
    import imagecodecs

    from inverity.stages.learned.train import TrainConfig, train

    tdir = tmp_path / "train"
    tdir.mkdir()
    for i, name in enumerate(("astronaut", "chelsea")):
        imagecodecs.imwrite(tdir / f"{i}.png", np.ascontiguousarray(getattr(skdata, name)()[:80, :80, :3]))

    def run(tag: str, seed: int) -> dict[str, torch.Tensor]:
        cfg = TrainConfig(train_dir=str(tdir), ckpt=str(tmp_path / f"{tag}.pt"), steps=2, batch=1, crop=64, N=8,
                          M=8, warmup=1, seed=seed, ckpt_every=100, threads=1)
        return train(cfg).state_dict()

    a, b, c = run("a", 3), run("b", 3), run("c", 4)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_read_only_pixels_encode_without_a_warning() -> None:
    """The loader hands out read-only arrays: encoding one is silent (no torch UserWarning on stderr) and gives
    the same bytes as a writable copy."""
    import warnings

    px = np.ascontiguousarray(skdata.astronaut()[:64, :96, :3])
    ro = px.copy()
    ro.setflags(write=False)
    stage = get_stage("learned", quality=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = stage.encode(Image(ro))
    assert data == stage.encode(Image(px))
