"""The checkerboard context model (``hp-ctx``): two-pass coding is exact, the context path is deterministic
across torch thread counts, the zoo entry is its own model (an ``hp-gain`` stream and an ``hp-ctx`` stream each
refuse the other's weights), and golden ``hp-ctx`` fixtures decode forever."""
from __future__ import annotations

import doctest
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FIXTURES, psnr
from skimage import data as skdata

import inverity.stages.learned.context as context
import inverity.stages.learned.zoo as zoo
from inverity.container import pack, unpack
from inverity.errors import ContainerError
from inverity.image import Image
from inverity.stages.base import get_stage
from inverity.stages.learned.entropy import LatentCodec

CTX = "hp-ctx"
BASE = "hp-gain"
pytestmark = [pytest.mark.skipif(CTX not in {m.name for m in zoo.list_models()}, reason="no hp-ctx in the zoo"),
              pytest.mark.usefixtures("one_torch_thread")]
GOLDEN = FIXTURES / "learned-hp-ctx"
REGEN = os.environ.get("INVERITY_REGEN_FIXTURES") == "1"



@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut()[40:168, 120:312, :3])  # 128×192


def _threads(n: int):
    class _T:
        def __enter__(self) -> None:
            self.before = torch.get_num_threads()
            torch.set_num_threads(n)

        def __exit__(self, *exc: object) -> None:
            torch.set_num_threads(self.before)
    return _T()


def test_zoo_entry_is_the_base_plus_a_context() -> None:
    info, base = zoo.model_info(CTX), zoo.model_info(BASE)
    assert info.context == context.CONTEXT_KIND and base.context is None
    assert (info.N, info.M, info.lambdas) == (base.N, base.M, base.lambdas)
    assert info.provenance["base"]["sha256"] == base.sha256 and info.sha256 != base.sha256
    codec, _ = zoo.load_codec(CTX)
    base_codec, _ = zoo.load_codec(BASE)
    assert isinstance(codec, context.CheckerboardCodec) and not isinstance(base_codec, context.CheckerboardCodec)
    for a, b in zip(codec.model.state_dict().values(), base_codec.model.state_dict().values()):
        assert torch.equal(a, b)  # the transforms are hp-gain's, frozen
    n = sum(p.numel() for p in codec.context.parameters())
    assert n == info.provenance["context_parameters"]
    json.dumps(info.to_dict())


def test_untrained_context_reconstructs_exactly_like_the_hyperprior(photo: np.ndarray) -> None:
    """Zero-initialised Δ: the two-pass stream is a different byte order but the same ŷ, so the same pixels."""
    base_codec, _ = zoo.load_codec(BASE)
    zero = context.CheckerboardContext(base_codec.model.M).eval()
    codec = context.CheckerboardCodec(base_codec.model, base_codec.tables, zero)
    for q in (0, 4):
        a = base_codec.decode(base_codec.encode(photo, q), q, *photo.shape[:2])
        payload = codec.encode(photo, q)
        assert np.array_equal(codec.decode(payload, q, *photo.shape[:2]), a)
        assert abs(len(payload) - len(base_codec.encode(photo, q))) <= 8  # same models, same rate


def test_trained_context_saves_bits_at_equal_quality(photo: np.ndarray) -> None:
    """Non-anchors are quantised around the context's μ (|y − ŷ| ≤ ½ either way): same PSNR, fewer bytes."""
    codec, _ = zoo.load_codec(CTX)
    base_codec, _ = zoo.load_codec(BASE)
    saved = []
    for q in (1, 3, 5):
        p_ctx, p_base = codec.encode(photo, q), base_codec.encode(photo, q)
        px = codec.decode(p_ctx, q, *photo.shape[:2])
        assert abs(psnr(photo, px) - psnr(photo, base_codec.decode(p_base, q, *photo.shape[:2]))) < 0.15
        saved.append(1 - len(p_ctx) / len(p_base))
    assert min(saved) > 0, saved


def test_context_path_identical_at_1_2_and_3_threads(photo: np.ndarray) -> None:
    codec, _ = zoo.load_codec(CTX)
    q = 3
    _, y = codec.analysis(photo, q)
    z_hat = torch.round(codec.model.h_a(y))[0].numpy().astype(np.int64)
    payloads, pixels, full = [], [], []
    for n in (1, 2, 3):
        with _threads(n):
            payloads.append(codec.encode_latents(y, z_hat))  # the context path, fixed latents
            full.append(codec.encode(photo, q))              # the whole encoder, g_a included
            pixels.append(codec.decode(payloads[0], q, *photo.shape[:2]))
    assert payloads[1] == payloads[0] and payloads[2] == payloads[0]
    assert full[1] == full[0] and full[2] == full[0]
    assert all(np.array_equal(p, pixels[0]) for p in pixels)


def test_stage_round_trip_and_header_names_the_model(photo: np.ndarray) -> None:
    img = Image(photo)
    data, recon = get_stage("learned", quality=4, model=CTX).encode_with_reconstruction(img)
    header, payload = unpack(data)
    assert header["model"] == CTX and header["weights_sha256"] == zoo.model_info(CTX).sha256[:16]
    out = get_stage("learned").decode(data)  # the decoder reads the model from the header
    assert np.array_equal(out.pixels, recon.pixels)
    plain = get_stage("learned", quality=4, model=BASE).encode(img)
    assert len(data) < len(plain)
    # an hp-ctx payload relabelled as hp-gain (or the reverse) is refused, never decoded with the wrong prior
    base_info = zoo.model_info(BASE)
    fake = pack({**header, "model": BASE, "model_version": base_info.version}, payload)
    with pytest.raises(ContainerError, match="weights sha256"):
        get_stage("learned").decode(fake)
    h2, p2 = unpack(plain)
    fake2 = pack({**h2, "model": CTX, "model_version": zoo.model_info(CTX).version}, p2)
    with pytest.raises(ContainerError, match="weights sha256"):
        get_stage("learned").decode(fake2)
    fake3 = pack({**h2, "model": CTX, "model_version": zoo.model_info(CTX).version,
                  "weights_sha256": zoo.model_info(CTX).sha256[:16]}, p2)
    with pytest.raises(ContainerError):  # decoded with the context's prior: garbage, refused by the hash
        get_stage("learned").decode(fake3)


def test_weights_without_context_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry that calls the hp-ctx file context-free (or the reverse) is an architecture mismatch."""
    import shutil

    from inverity.errors import ModelError

    src = zoo.weights_dir()
    reg = zoo.read_registry(src)
    shutil.copy2(zoo.model_info(CTX).path, tmp_path / f"{CTX}.pt")
    entry = json.loads(json.dumps(reg["models"][CTX]))
    entry["architecture"].pop("context")
    (tmp_path / zoo.REGISTRY).write_text(json.dumps({"format": 1, "default": CTX, "models": {CTX: entry}}))
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(tmp_path))
    zoo.clear_cache()
    with pytest.raises(ModelError, match="architecture"):
        zoo.load_codec(CTX)
    zoo.clear_cache()


def test_golden_fixtures_decode() -> None:
    """Committed hp-ctx streams decode bit-identically (regenerate only with INVERITY_REGEN_FIXTURES=1)."""
    manifest_path = GOLDEN / "manifest.json"
    src = np.ascontiguousarray(skdata.chelsea()[60:124, 100:196, :3])  # 64×96
    if REGEN and not manifest_path.is_file():
        GOLDEN.mkdir(parents=True, exist_ok=True)
        manifest = {}
        for q in (2, 5):
            data, recon = get_stage("learned", quality=q, model=CTX).encode_with_reconstruction(Image(src))
            (GOLDEN / f"chelsea_q{q}.inv").write_bytes(data)
            np.save(GOLDEN / f"chelsea_q{q}.ref.npy", recon.pixels, allow_pickle=False)
            manifest[f"chelsea_q{q}"] = {"file": f"chelsea_q{q}.inv", "model": CTX, "quality": q,
                                         "shape": list(recon.pixels.shape)}
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    manifest = json.loads(manifest_path.read_text())
    assert len(manifest) == 2
    for name, entry in manifest.items():
        decoded = get_stage("learned").decode((GOLDEN / entry["file"]).read_bytes())
        assert unpack((GOLDEN / entry["file"]).read_bytes())[0]["model"] == CTX
        ref = np.load(GOLDEN / f"{name}.ref.npy", allow_pickle=False)
        assert np.array_equal(decoded.pixels, ref), name


def test_anchor_mask_and_kernel_mask() -> None:
    m = context.anchor_mask(4, 5)
    assert m.sum() == 10 and not (m[:, 1:] & m[:, :-1]).any() and not (m[1:] & m[:-1]).any()
    ctx = context.CheckerboardContext(4)
    k = ctx.mask[0, 0].numpy()
    assert k[2, 2] == 0 and k[2, 1] == 1 and k[1, 1] == 0 and k.sum() == 12  # only the anchors around a non-anchor


def test_doctests() -> None:
    result = doctest.testmod(context, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_codec_is_a_latent_codec() -> None:
    assert issubclass(context.CheckerboardCodec, LatentCodec)


def test_ood_gate_uses_the_base_statistics_for_the_context_model() -> None:
    """hp-ctx runs hp-gain's frozen transforms, so the gate's model evidence (and its statistics) are hp-gain's."""
    from inverity.analyse import analyse

    info = zoo.model_info(CTX)
    assert info.transforms_sha256 == zoo.model_info(BASE).sha256 != info.sha256
    assert zoo.model_info(BASE).transforms_sha256 == zoo.model_info(BASE).sha256
    stats = json.loads(zoo.ood_stats_path(CTX).read_text())
    if "model_evidence" not in stats:
        pytest.skip("OOD statistics without a model part")
    assert stats["model_evidence"]["weights_sha256"] == info.transforms_sha256
    img = Image(skdata.coffee())
    p_ctx, p_base = analyse(img, model_name=CTX), analyse(img, model_name=BASE)
    assert p_ctx.learned_gate() is True and p_base.learned_gate() is True, p_ctx.reasons
    assert p_ctx.ood_score == p_base.ood_score and p_ctx.evidence == p_base.evidence
