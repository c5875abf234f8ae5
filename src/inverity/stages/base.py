"""The stage contract (numcodecs-style) and the stage registry.

A stage turns an :class:`~inverity.image.Image` into bytes and back. ``codec_id`` is a compatibility promise
(STYLE.md 2): changing a bitstream or its meaning means a new id. ``get_config()`` returns JSON-only data that
includes the id; ``get_stage(config)`` rebuilds an equal stage.
"""
from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, TypeVar

from ..errors import UnknownIdError, UnsupportedInputError
from ..formats import SAME_AS_INPUT, get_format
from ..image import Image

__all__ = ["Capabilities", "Stage", "register_stage", "get_stage", "stage_class", "list_stages"]


@dataclass(frozen=True)
class Capabilities:
    """What a stage can take and keep.

    ``format`` names the :mod:`inverity.formats` entry the stage writes (``"*"``: the input's own format); it is
    the only place a stage states its format. ``extensions`` and ``mime`` default to that format's.
    """

    lossless: bool
    bit_depths: tuple[int, ...] = (8,)          # dtype widths accepted: 8 and/or 16
    channels: tuple[int, ...] = (1, 3)          # channel counts accepted
    alpha: bool = False
    metadata: tuple[str, ...] = ()              # which of icc/exif/xmp/dicom the output file can carry
    extensions: tuple[str, ...] = ()            # output file extension(s), first is the default
    mime: str = "application/octet-stream"
    standard: bool = True                       # a standardised format any client can decode
    learned: bool = False
    near_lossless: bool = False                 # supports a max-abs-error bound
    sources: tuple[str, ...] = ()               # input file formats it transcodes (needs their bytes); () = any pixels
    format: str = ""                            # the format written (inverity.formats); "" = undeclared

    def __post_init__(self) -> None:
        if self.format and self.format != SAME_AS_INPUT:
            fmt = get_format(self.format)   # an unknown name fails at import, listing the known formats
            if not self.extensions:
                object.__setattr__(self, "extensions", fmt.extensions)
            if self.mime == "application/octet-stream" and fmt.media_type:
                object.__setattr__(self, "mime", fmt.media_type)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Stage:
    """Base class. Subclasses set ``codec_id`` and ``capabilities`` and implement ``encode``/``decode``."""

    codec_id: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities]
    #: option names accepted by ``__init__`` (besides ``quality``); the config holds them
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, quality: int | None = None, **opts: Any) -> None:
        unknown = set(opts) - set(self.options)
        if unknown:
            raise TypeError(f"{self.codec_id}: unknown option(s) {sorted(unknown)}; accepted: {list(self.options)}")
        self.quality = quality
        self.opts = dict(opts)

    # -- numcodecs-style config ------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"id": self.codec_id}
        if self.quality is not None:
            cfg["quality"] = self.quality
        cfg.update(self.opts)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Stage":
        cfg = dict(config)
        cid = cfg.pop("id", cls.codec_id)
        if cid != cls.codec_id:
            raise ValueError(f"config id {cid!r} does not match stage {cls.codec_id!r}")
        return cls(**cfg)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stage) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.get_config().items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "id")
        return f"{type(self).__name__}({args})"

    # -- the codec ------------------------------------------------------------------------------------------
    def encode(self, image: Image) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> Image:
        raise NotImplementedError

    @classmethod
    def library_version(cls) -> str:
        """Version of the underlying library (shown by ``inverity codecs``)."""
        return "unknown"

    @classmethod
    def available(cls) -> bool:
        return True

    def check_input(self, image: Image) -> None:
        """Refuse, with a clear message, an image this stage cannot take (never silently convert)."""
        caps = self.capabilities
        width = 8 * image.pixels.dtype.itemsize
        if width not in caps.bit_depths:
            raise UnsupportedInputError(
                f"{self.codec_id} cannot encode {width}-bit images (supports {'/'.join(map(str, caps.bit_depths))}-bit)")
        if image.channels not in caps.channels:
            raise UnsupportedInputError(
                f"{self.codec_id} cannot encode {image.colour} ({image.channels} channels); "
                f"supports {', '.join(str(c) for c in caps.channels)} channels")


S = TypeVar("S", bound=type[Stage])
_REGISTRY: dict[str, type[Stage]] = {}
#: modules that register stages when imported (lazy: only when the registry is first used)
_STAGE_MODULES: tuple[str, ...] = ("inverity.stages.classical", "inverity.stages.lossless",
                                   "inverity.stages.learned.stage", "inverity.stages.source")
_loaded = False


def register_stage(cls: S) -> S:
    """Class decorator: add a stage to the registry under its ``codec_id``."""
    cid = cls.codec_id
    if not cid:
        raise ValueError(f"{cls.__name__} has no codec_id")
    if cid in _REGISTRY and _REGISTRY[cid] is not cls:
        raise ValueError(f"codec_id {cid!r} registered twice ({_REGISTRY[cid].__name__}, {cls.__name__})")
    _REGISTRY[cid] = cls
    return cls


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _STAGE_MODULES:
        importlib.import_module(mod)


def stage_class(codec_id: str) -> type[Stage]:
    _ensure_loaded()
    try:
        return _REGISTRY[codec_id]
    except KeyError:
        raise UnknownIdError("codec", codec_id, list(_REGISTRY)) from None


def get_stage(config: dict[str, Any] | str, **kwargs: Any) -> Stage:
    """Build a stage from a config dict (with ``id``) or from an id plus keyword options."""
    if isinstance(config, str):
        return stage_class(config)(**kwargs)
    return stage_class(config["id"]).from_config(config)


def list_stages() -> dict[str, type[Stage]]:
    _ensure_loaded()
    return dict(sorted(_REGISTRY.items()))
