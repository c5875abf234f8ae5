"""The model zoo: learned-stage weights by name, each checked against its recorded sha256 on every load.

Everything lives in one folder (``weights/`` next to this file, or ``$INVERITY_WEIGHTS_DIR``, or the
``weights_dir`` argument — tests point it at a temporary copy)::

    weights/registry.json        name -> version, file, sha256, architecture, qualities, timings, provenance
    weights/<name>.pt            torch.save of {"format", "architecture", "state_dict", "z_tables"}, or, for a
                                 decoder fine-tune (registry key ``delta_of``), of {"format", "architecture",
                                 "state_dict" (only the tensors it changes), "delta_of": {name, version, sha256}}
    weights/<name>.ood.json      training-set statistics for the OOD gate (written by the analyse helper)

``registry.json`` is the source of truth for what a model *is*: a ``.inv`` stream names the model and its
version, and the decoder refuses a stream whose weights digest differs from the installed one. The weights
file is loaded with ``torch.load(weights_only=True)`` (tensors and plain containers only, no pickled code).
A new export of the same name bumps the version (``export.py``), so streams of the old weights are refused
by version, legibly, instead of decoding into garbage.

A *delta* model (``"delta_of": "<base>"`` in its registry entry) decodes its base's bitstream with other
decoder weights (``train_dec.py``: g_s and the inverse gains fine-tuned on the real latents). Its file holds
only the changed tensors and the base's sha256; loading it loads the base first (checked against its own
sha256), refuses a delta built on other base weights, and overlays the tensors. Both digests are thereby
pinned: the delta's own in the stream header, the base's inside the delta's file.

The registry is read without importing torch, so listing models (``inverity codecs``) stays cheap.

Examples
--------
>>> from inverity.stages.learned import zoo
>>> isinstance(zoo.list_models(), list)
True
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ModelError, UnknownIdError

if TYPE_CHECKING:  # torch is imported lazily
    from .entropy import LatentCodec
    from .model import ScaleHyperprior

__all__ = [
    "DEFAULT_MODEL", "WEIGHTS_ENV", "WEIGHTS_FORMAT", "ModelInfo", "weights_dir", "read_registry", "list_models",
    "default_model", "model_info", "load_model", "load_codec", "ood_stats_path", "sha256_file", "clear_cache",
    "write_registry", "with_decoder",
]

#: the model the learned stage uses when none is named (the registry may name another as "default")
DEFAULT_MODEL = "hp-gain"
#: environment variable that points the zoo at another weights folder
WEIGHTS_ENV = "INVERITY_WEIGHTS_DIR"
#: the ``format`` tag inside a weights file
WEIGHTS_FORMAT = "inverity-learned-weights/1"
REGISTRY = "registry.json"

_PACKAGE_WEIGHTS = Path(__file__).resolve().parent / "weights"
_CACHE: dict[tuple[str, str], tuple[tuple[tuple[int, int, int], ...], Any, Any]] = {}
_CACHE_LOCK = threading.RLock()  # re-entrant: loading a delta model loads its base under the same lock


@dataclass(frozen=True)
class ModelInfo:
    """What the registry says about one model (no weights loaded)."""

    name: str
    version: int
    sha256: str
    path: Path
    N: int
    M: int
    lambdas: tuple[float, ...]
    decode_ms_per_mp: float | None = None
    encode_ms_per_mp: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    ood_stats: Path | None = None
    #: spatial context model on top of the hyperprior (``"checkerboard"``, :mod:`.context`) or ``None``
    context: str | None = None
    #: for a decoder fine-tune: the model whose bitstream (encoder, entropy model) it shares, else ``None``
    delta_of: str | None = None
    #: hidden width of the synthesis g_s when it differs from ``N`` (a widened decoder), else ``None``
    Ns: int | None = None

    @property
    def qualities(self) -> tuple[int, ...]:
        """1-based quality indices (higher = better): ``(1, ..., K)``."""
        return tuple(range(1, len(self.lambdas) + 1))

    @property
    def transforms_sha256(self) -> str:
        """sha256 of the weights whose transforms (g_a, g_s, h_a, h_s, gains) this model runs: its own, or, for a
        context model trained on frozen transforms, its base model's. The OOD gate's model evidence depends on
        these transforms only, so statistics fitted for the base stay valid for the context model."""
        base = self.provenance.get("base") if self.context else None
        return str(base["sha256"]).lower() if isinstance(base, dict) and base.get("sha256") else self.sha256

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "path": str(self.path),
                "architecture": {"N": self.N, "M": self.M, "lambdas": list(self.lambdas),
                                 **({"context": self.context} if self.context else {}),
                                 **({"Ns": self.Ns} if self.Ns else {})},
                **({"delta_of": self.delta_of} if self.delta_of else {}),
                "qualities": list(self.qualities), "decode_ms_per_mp": self.decode_ms_per_mp,
                "encode_ms_per_mp": self.encode_ms_per_mp, "provenance": self.provenance,
                "ood_stats": str(self.ood_stats) if self.ood_stats else None}


def weights_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The weights folder: ``override``, else ``$INVERITY_WEIGHTS_DIR``, else the package's ``weights/``."""
    if override is not None:
        return Path(override)
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else _PACKAGE_WEIGHTS


def read_registry(wdir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The parsed ``registry.json`` (an empty registry when the file does not exist)."""
    path = weights_dir(wdir) / REGISTRY
    if not path.is_file():
        return {"format": 1, "default": DEFAULT_MODEL, "models": {}}
    try:
        reg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"learned model registry {path} is unreadable: {exc}") from None
    if not isinstance(reg, dict) or not isinstance(reg.get("models"), dict):
        raise ModelError(f"learned model registry {path} is malformed (no 'models' table)")
    return reg


def _info(name: str, entry: dict[str, Any], wdir: Path) -> ModelInfo:
    try:
        arch = entry["architecture"]
        ood = entry.get("ood_stats") or f"{name}.ood.json"
        return ModelInfo(name=name, version=int(entry["version"]), sha256=str(entry["sha256"]).lower(),
                         path=wdir / entry["file"], N=int(arch["N"]), M=int(arch["M"]),
                         lambdas=tuple(float(v) for v in arch["lambdas"]),
                         decode_ms_per_mp=entry.get("decode_ms_per_mp"), encode_ms_per_mp=entry.get("encode_ms_per_mp"),
                         provenance=dict(entry.get("provenance") or {}), ood_stats=wdir / ood,
                         context=arch.get("context"), delta_of=entry.get("delta_of") or None,
                         Ns=int(arch["Ns"]) if arch.get("Ns") else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"learned model registry entry {name!r} is malformed: missing or bad {exc}") from None


def write_registry(reg: dict[str, Any], wdir: str | os.PathLike[str] | None = None) -> None:
    """Write ``registry.json`` atomically (world-readable, as package data is) and forget loaded models."""
    from ..._atomic import atomic_write_text

    path = weights_dir(wdir) / REGISTRY
    atomic_write_text(path, json.dumps(reg, indent=2) + "\n")
    os.chmod(path, 0o644)
    clear_cache()


def list_models(wdir: str | os.PathLike[str] | None = None) -> list[ModelInfo]:
    """Every registered model, by name."""
    d = weights_dir(wdir)
    reg = read_registry(d)
    return [_info(n, e, d) for n, e in sorted(reg["models"].items())]


def default_model(wdir: str | os.PathLike[str] | None = None) -> str:
    """The registry's default model name (``DEFAULT_MODEL`` unless the registry says otherwise)."""
    return str(read_registry(wdir).get("default") or DEFAULT_MODEL)


def model_info(name: str | None = None, wdir: str | os.PathLike[str] | None = None) -> ModelInfo:
    """Registry facts of ``name`` (default model if ``None``); :class:`UnknownIdError` if not registered."""
    d = weights_dir(wdir)
    reg = read_registry(d)
    name = name or str(reg.get("default") or DEFAULT_MODEL)
    if name not in reg["models"]:
        raise UnknownIdError("learned model", name, list(reg["models"]))
    return _info(name, reg["models"][name], d)


def ood_stats_path(name: str | None = None, wdir: str | os.PathLike[str] | None = None) -> Path:
    """Where the OOD statistics of ``name``'s training set live (the file may not exist yet)."""
    d = weights_dir(wdir)
    reg = read_registry(d)
    name = name or str(reg.get("default") or DEFAULT_MODEL)
    entry = reg["models"].get(name, {})
    return d / (entry.get("ood_stats") or f"{name}.ood.json")


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read_weights(info: ModelInfo) -> dict[str, Any]:
    """The weights file as a dict (tensors and plain containers only), or a one-line :class:`ModelError`."""
    import torch

    try:
        blob = torch.load(info.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing fault
        raise ModelError(f"weights for model {info.name}: cannot read {info.path.name}: {exc}") from None
    if not isinstance(blob, dict) or blob.get("format") != WEIGHTS_FORMAT:
        raise ModelError(f"weights for model {info.name}: {info.path.name} is not an {WEIGHTS_FORMAT} file")
    return blob


def with_decoder(base: LatentCodec, tensors: dict[str, Any], Ns: int | None = None) -> LatentCodec:
    """A codec of ``base``'s class, z tables and context whose model is ``base``'s with ``tensors`` overlaid
    (a decoder fine-tune: g_s, of width ``Ns`` if given, and the inverse gains), frozen, in eval mode.

    What a delta model loads as (:func:`load_codec`), and how its exporter and the decoder benchmark try a
    checkpoint before it is registered. ``load_state_dict``'s ``RuntimeError`` says which tensors do not fit.
    """
    from .context import CheckerboardCodec
    from .entropy import LatentCodec
    from .model import ScaleHyperprior

    m0 = base.model
    model = ScaleHyperprior(m0.N, m0.M, m0.lambdas, Ns)
    model.load_state_dict({**m0.state_dict(), **tensors}, strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if isinstance(base, CheckerboardCodec):
        return CheckerboardCodec(model, base.tables, base.context)
    return LatentCodec(model, base.tables)


def _load_delta(info: ModelInfo) -> tuple[ScaleHyperprior, LatentCodec]:
    """A decoder fine-tune: its base (sha256-checked on its own), with this file's tensors overlaid."""
    assert info.delta_of is not None
    if model_info(info.delta_of, info.path.parent).delta_of:  # one level only: no chains, no cycles
        raise ModelError(f"weights for model {info.name}: its base {info.delta_of} is itself a delta model")
    base_model, base_codec, binfo = _load_checked(info.delta_of, info.path.parent)
    blob = _read_weights(info)
    pinned = str((blob.get("delta_of") or {}).get("sha256", "")).lower()
    if pinned != binfo.sha256:
        raise ModelError(f"weights for model {info.name}: built on {info.delta_of} weights {pinned[:12] or '?'}…, "
                         f"installed {info.delta_of} has {binfo.sha256[:12]}…; re-export it from the installed base")
    if (binfo.N, binfo.M, binfo.lambdas, binfo.context) != (info.N, info.M, info.lambdas, info.context):
        raise ModelError(f"weights for model {info.name}: architecture differs from its base {info.delta_of} "
                         "(a delta may only change the synthesis width Ns)")
    delta = blob.get("state_dict")
    known = set(base_model.state_dict())
    if not isinstance(delta, dict) or not delta or set(delta) - known:
        extra = sorted(set(delta or {}) - known)[:2] if isinstance(delta, dict) else "not a table"
        raise ModelError(f"weights for model {info.name}: incompatible delta tensors ({extra or 'none'})")
    try:
        codec = with_decoder(base_codec, delta, info.Ns)
    except RuntimeError as exc:
        raise ModelError(f"weights for model {info.name}: incompatible with its base: "
                         f"{str(exc).strip().splitlines()[0]}") from None
    return codec.model, codec


def _stat_chain(info: ModelInfo) -> tuple[tuple[int, int, int], ...]:
    """File identity of a model's weights and, for a delta, of its base's (a changed base invalidates both)."""
    key = (_stat_key(info.path),)
    if info.delta_of:
        base = model_info(info.delta_of, info.path.parent).path
        key += (_stat_key(base),) if base.is_file() else ()
    return key


def _load(info: ModelInfo) -> tuple[ScaleHyperprior, LatentCodec]:
    from .context import CONTEXT_KIND, PREFIX, CheckerboardCodec, CheckerboardContext
    from .entropy import LatentCodec, ZTables
    from .model import ScaleHyperprior

    if info.delta_of:
        return _load_delta(info)
    blob = _read_weights(info)
    arch = blob.get("architecture", {})
    if ((arch.get("N"), arch.get("M"), arch.get("Ns")) != (info.N, info.M, info.Ns)
            or tuple(arch.get("lambdas", ())) != info.lambdas or arch.get("context") != info.context):
        raise ModelError(f"weights for model {info.name}: architecture {arch} differs from the registry's "
                         f"N={info.N}, M={info.M}, lambdas={list(info.lambdas)}, context={info.context}")
    if info.context not in (None, CONTEXT_KIND):
        raise ModelError(f"weights for model {info.name}: unknown context model {info.context!r}")
    model = ScaleHyperprior(info.N, info.M, info.lambdas, info.Ns)
    ctx = CheckerboardContext(info.M) if info.context else None
    try:
        state = dict(blob["state_dict"])
        ctx_state = {k[len(PREFIX):]: state.pop(k) for k in list(state) if k.startswith(PREFIX)}
        model.load_state_dict(state, strict=True)
        if ctx is not None:
            ctx.load_state_dict(ctx_state, strict=True)
        elif ctx_state:
            raise KeyError(f"unexpected context parameters {sorted(ctx_state)[:2]}")
        tables = ZTables.from_tensors(blob["z_tables"])
    except (KeyError, RuntimeError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"weights for model {info.name}: incompatible with ScaleHyperprior: {msg}") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if ctx is not None:
        for p in ctx.parameters():
            p.requires_grad_(False)
        return model, CheckerboardCodec(model, tables, ctx)
    return model, LatentCodec(model, tables)


def _load_checked(name: str | None, wdir: str | os.PathLike[str] | None) -> tuple[Any, Any, ModelInfo]:
    info = model_info(name, wdir)
    path = info.path
    if not path.is_file():
        raise ModelError(f"weights for model {info.name}: file {path} is missing")
    key = (str(path.resolve()), info.sha256)
    with _CACHE_LOCK:
        stat = _stat_chain(info)
        hit = _CACHE.get(key)
        if hit is not None and hit[0] == stat:  # same file, untouched since it was hashed
            return hit[1], hit[2], info
        got = sha256_file(path)
        if got != info.sha256:
            raise ModelError(f"weights for model {info.name}: sha256 mismatch (expected {info.sha256}, got {got}); "
                             f"the file {path.name} was altered or replaced")
        model, codec = _load(info)
        _CACHE[key] = (stat, model, codec)
        return model, codec, info


def load_model(name: str | None = None,
               wdir: str | os.PathLike[str] | None = None) -> tuple[ScaleHyperprior, ModelInfo]:
    """The network of ``name`` (default model if ``None``), in eval mode, and its :class:`ModelInfo`.

    The file's sha256 is compared with the registry before its first use and again whenever the file
    changed on disk since (size, mtime or inode); a mismatch raises :class:`ModelError`. Loaded models are
    cached per file and digest.
    """
    model, _codec, info = _load_checked(name, wdir)
    return model, info


def load_codec(name: str | None = None,
               wdir: str | os.PathLike[str] | None = None) -> tuple[LatentCodec, ModelInfo]:
    """Like :func:`load_model`, but returns the :class:`~inverity.stages.learned.entropy.LatentCodec`."""
    _model, codec, info = _load_checked(name, wdir)
    return codec, info


def clear_cache() -> None:
    """Forget loaded models (tests; after re-exporting weights in the same process)."""
    with _CACHE_LOCK:
        _CACHE.clear()
