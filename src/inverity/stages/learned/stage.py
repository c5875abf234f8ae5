"""The learned stage: our own mean-scale-hyperprior codec behind the ordinary stage contract.

``LearnedStage(quality=1..K, model=NAME)`` encodes 8-bit RGB of any size into an ``.inv`` container
(:mod:`inverity.container`) and refuses everything else with a one-line reason. It never fails silently:

- **encode** pads to a multiple of 64 (replicate), codes, then *decodes its own stream* and writes the
  sha256 of that reconstruction into the header;
- **decode** refuses a stream whose model is not installed, whose model version or weights digest differs
  from the installed one, or whose decoded pixels do not hash to the header's value — the last one is what
  a different decoder platform would produce, and a refusal is the only safe answer to it.

Models come from the zoo (:mod:`.zoo`): ``hp-gain`` (mean-scale hyperprior, :mod:`.model`) and ``hp-ctx`` (the
same frozen transforms plus a two-pass checkerboard context, :mod:`.context`); the header names the model, so
either decoder refuses the other's streams.

Quality is 1-based (1 = fewest bytes, K = best); K is the model's number of rate points (its λ ladder in the
zoo's registry, :attr:`LearnedStage.qualities`), never a constant here; internally the model uses the 0-based
gain index ``quality - 1``.

Examples
--------
>>> from inverity.stages.learned.stage import LearnedStage
>>> LearnedStage(quality=3).get_config()["id"]
'learned'
"""
from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from typing import Any, ClassVar

import numpy as np

from ...container import pack, unpack
from ...errors import ContainerError, UnknownIdError, UnsupportedInputError
from ...image import DEFAULT_MAX_PIXELS, Image
from ..base import Capabilities, Stage, register_stage
from . import zoo

__all__ = ["LearnedStage", "DEFAULT_QUALITY", "recon_sha256"]

#: quality used when none is given (1-based; mid-high on the scale of the shipped models, which have K >= 4)
DEFAULT_QUALITY = 4
_DIGEST_HEX = 16  # the container keeps 8 bytes of each digest


def _pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "0+unknown"


def recon_sha256(pixels: np.ndarray) -> str:
    """sha256 (hex) of decoded pixels as C-ordered bytes — what the ``.inv`` header pins.

    Examples
    --------
    >>> recon_sha256(np.zeros((2, 2, 3), np.uint8))[:16]
    '15ec7bf0b50732b4'
    """
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


@register_stage
class LearnedStage(Stage):
    """Learned lossy codec (``.inv``); option ``model`` names a zoo model (default: the registry's default).

    Option ``refine`` (default 0) spends encode time on per-image latent refinement (:mod:`.refine`, SGA): an
    integer step count or an effort name (``fast``/``balanced`` = 0, ``max`` = 200); ``seed`` (default 0)
    fixes its noise. The stream and its decoder are the same either way.
    """

    codec_id: ClassVar[str] = "learned"
    capabilities: ClassVar[Capabilities] = Capabilities(
        lossless=False, bit_depths=(8,), channels=(3,), alpha=False, metadata=(), format="inv",
        standard=False, learned=True, near_lossless=False)
    options: ClassVar[tuple[str, ...]] = ("model", "refine", "seed")

    def __init__(self, quality: int | None = None, **opts: Any) -> None:
        super().__init__(quality, **opts)
        model = opts.get("model")
        if model is not None and not isinstance(model, str):
            raise ValueError(f"learned: option model must be a model name, got {model!r}")
        if "refine" in opts:
            from .refine import resolve_steps  # torch only when refinement is asked for

            resolve_steps(opts["refine"])
        seed = opts.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"learned: option seed must be a non-negative integer, got {seed!r}")
        k = len(self.info.lambdas) if self._registered() else None  # an unknown model name fails here
        if quality is not None:
            if isinstance(quality, bool) or not isinstance(quality, int) or quality < 1 or (k and quality > k):
                rng = f"1..{k}" if k else "1..K"
                raise ValueError(f"learned: quality must be an integer in {rng} (higher = better), got {quality!r}")

    # -- facts about the configured model ---------------------------------------------------------------------
    def _registered(self) -> bool:
        try:
            self.info
        except UnknownIdError:
            if self.opts.get("model") is not None:
                raise
            return False
        return True

    @property
    def info(self) -> zoo.ModelInfo:
        """Registry facts of the configured model (:class:`UnknownIdError` if it is not installed)."""
        return zoo.model_info(self.opts.get("model"))

    @property
    def qualities(self) -> tuple[int, ...]:
        return self.info.qualities

    @property
    def quality_range(self) -> tuple[int, int]:
        q = self.qualities
        return (q[0], q[-1])

    @property
    def max_abs_error(self) -> int | None:
        return None

    @property
    def extension(self) -> str:
        return ".inv"

    @classmethod
    def library_version(cls) -> str:
        return f"torch {_pkg_version('torch')}, constriction {_pkg_version('constriction')}"

    @classmethod
    def available(cls) -> bool:
        if find_spec("torch") is None or find_spec("constriction") is None:
            return False
        try:
            return bool(zoo.list_models())
        except Exception:  # noqa: BLE001 - an unreadable registry means "not available", reported elsewhere
            return False

    def check_input(self, image: Image) -> None:
        width = 8 * image.pixels.dtype.itemsize
        if width != 8 or image.channels != 3:
            raise UnsupportedInputError(
                f"learned stage takes 8-bit RGB only; got a {width}-bit {image.colour} image"
                + (" (alpha would be lost)" if image.has_alpha else ""))

    # -- the codec --------------------------------------------------------------------------------------------
    def encode_with_reconstruction(self, image: Image) -> tuple[bytes, Image]:
        """``.inv`` bytes and the reconstruction the encoder verified (so callers need not decode again)."""
        self.check_input(image)
        codec, info = zoo.load_codec(self.opts.get("model"))
        quality = DEFAULT_QUALITY if self.quality is None else int(self.quality)
        if quality not in info.qualities:
            raise ValueError(f"learned: quality must be an integer in 1..{len(info.qualities)}, got {quality}")
        h, w = image.height, image.width
        steps = 0
        if self.opts.get("refine"):
            from .refine import encode_refined, resolve_steps

            steps = resolve_steps(self.opts["refine"])
        if steps:
            payload, _ = encode_refined(codec, image.pixels, quality - 1, steps, seed=int(self.opts.get("seed", 0)))
        else:
            payload = codec.encode(image.pixels, quality - 1)
        recon = codec.decode(payload, quality - 1, h, w)  # decode our own stream: what the header vouches for
        header = {"codec_id": self.codec_id, "model": info.name, "model_version": info.version, "quality": quality,
                  "shape": [h, w, 3], "dtype": "uint8", "package_version": _pkg_version("inverity"),
                  "weights_sha256": info.sha256, "recon_sha256": recon_sha256(recon)}
        return pack(header, payload), Image(recon, 8, "inv", dict(image.metadata))

    def encode(self, image: Image) -> bytes:
        return self.encode_with_reconstruction(image)[0]

    def decode(self, data: bytes) -> Image:
        header, payload = unpack(data)
        if header["codec_id"] != self.codec_id:
            raise ContainerError(f".inv stream was written by stage {header['codec_id']!r}, not {self.codec_id!r}")
        shape = header["shape"]
        if (header["dtype"] != "uint8" or len(shape) != 3 or not all(isinstance(v, int) for v in shape)
                or shape[2] != 3 or min(shape) < 1):
            raise ContainerError(f".inv header describes an image this decoder cannot produce: "
                                 f"{header['dtype']} {shape}")
        if shape[0] * shape[1] > DEFAULT_MAX_PIXELS:
            raise ContainerError(f".inv header declares {shape[0]}×{shape[1]} pixels, over the limit of "
                                 f"{DEFAULT_MAX_PIXELS}")
        name, ver = header["model"], header["model_version"]
        try:
            info = zoo.model_info(name)
        except UnknownIdError as exc:
            raise ContainerError(f".inv stream needs learned model {name!r} (version {ver}), which is not installed; "
                                 f"available: {', '.join(exc.available) or '(none)'}") from None
        if info.version != ver:
            raise ContainerError(f".inv stream needs learned model {name!r} version {ver}; "
                                 f"installed is version {info.version}")
        if not info.sha256.startswith(header["weights_sha256"]):
            raise ContainerError(f".inv stream was encoded with weights sha256 {header['weights_sha256']}…, but "
                                 f"installed {name} v{info.version} has {info.sha256[:_DIGEST_HEX]}…")
        quality = header["quality"]
        if quality not in info.qualities:
            raise ContainerError(f".inv header quality {quality} outside 1..{len(info.qualities)} of model {name}")
        codec, info = zoo.load_codec(name)  # ModelError if the weights file is missing or altered
        h, w = int(shape[0]), int(shape[1])
        pixels = codec.decode(payload, quality - 1, h, w)
        got = recon_sha256(pixels)
        if not got.startswith(header["recon_sha256"]):
            raise ContainerError(
                "decoded image differs from the encoder's verified reconstruction "
                f"(sha256 {header['recon_sha256']}…, got {got[:_DIGEST_HEX]}…): "
                "refusing rather than returning a wrong picture; decoder platform differs?")
        return Image(pixels, 8, "inv")
