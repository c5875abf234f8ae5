"""Policies: what a user allows for an asset — pure data, no codec logic.

A :class:`Policy` says which stages may be used (or ``None``: the router's per-kind preference table), which
floors a reconstruction must meet (:class:`inverity.verify.Floors`), whether the learned stage is allowed and
on what decode budget and hardware, which formats the clients accept, and whether metadata must survive.
The router (:mod:`inverity.route`) turns a policy plus a :class:`~inverity.analyse.Profile` into an ordered
list of candidates; the pipeline encodes and verifies them.

Built-ins (DESIGN.md "Policies"):

============  ================================================================================================
``archive``     lossless only, standardised formats (PNG, JPEG 2000, JPEG-LS, JPEG XL lossless), metadata kept,
                bit-exact round trip verified, never learned
``diagnostic``  lossless by default, or every sample within ``max_abs_error`` (JPEG-LS near-lossless); never
                learned; DICOM keeps its dataset and gets a lossless transfer syntax
``delivery``    standard formats clients decode (optionally an ``accept`` list), quality searched per image to
                meet a perceptual floor at the fewest bytes; line art/screens lossless or near-lossless;
                never learned
``controlled``  delivery plus the learned stage first for in-distribution photos within the decode budget on
                the declared hardware, verified with the structure checks as well
``auto``        picks archive/diagnostic/delivery per asset (:func:`inverity.route.resolve_policy`); never
                ``controlled``: the learned stage is always the user's explicit choice
============  ================================================================================================

User policies are TOML files; every key is checked, and contradictions are refused with a one-line
:class:`~inverity.errors.PolicyError`::

    # web.toml
    extends = "delivery"            # start from a built-in (optional)
    description = "browsers: AVIF, WebP or JPEG"
    accept = ["avif", "webp", "jpeg"]
    [floors]
    ssimulacra2 = 75

Examples
--------
>>> get_policy("archive").lossless_only
True
>>> get_policy("delivery").allow_learned
False
>>> Policy.from_dict({"name": "x", "lossless_only": True, "allow_learned": True})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
inverity.errors.PolicyError: policy x: allow_learned contradicts lossless_only ...
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import PolicyError, UnknownIdError
from .verify import Floors

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pyproject pins tomli for 3.10
    import tomli as tomllib

__all__ = ["Policy", "BUILTIN_POLICIES", "HARDWARE", "FORMATS", "CODEC_FORMAT", "KNOWN_CODEC_IDS",
           "get_policy", "register_policy", "list_policies", "load_policy_file", "example_policies"]

#: the built-in policy names (contract)
BUILTIN_POLICIES = ("auto", "archive", "diagnostic", "delivery", "controlled")
HARDWARE = ("cpu", "gpu")

#: delivery formats a client may accept, and the stage ids that produce each (``accept`` is checked against it)
CODEC_FORMAT: dict[str, str] = {
    "jpeg": "jpeg", "webp": "webp", "webp-lossless": "webp", "avif": "avif", "jxl": "jxl",
    "jxl-lossless": "jxl", "png": "png", "jpegls": "jls", "jpeg2000": "jp2", "learned": "inv",
}
FORMATS = tuple(sorted(set(CODEC_FORMAT.values())))
_FORMAT_ALIASES = {"jpg": "jpeg", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/webp": "webp",
                   "image/avif": "avif", "image/jxl": "jxl", "image/png": "png", "jpegls": "jls", "jpeg-ls": "jls",
                   "image/jls": "jls", "jpeg2000": "jp2", "j2k": "jp2", "image/jp2": "jp2",
                   "application/x-inverity": "inv"}
#: the codec ids of the stage contract (used when the stage registry cannot be imported)
KNOWN_CODEC_IDS = tuple(CODEC_FORMAT)
#: stages that only ever lose information (refused by ``lossless_only``)
_LOSSY_ONLY = ("jpeg", "webp", "avif", "jxl", "learned")

_TOML_KEYS = ("name", "description", "extends", "stages", "floors", "allow_learned", "lossless_only",
              "max_abs_error", "decode_budget_ms_per_mp", "hardware", "accept", "standard_only", "keep_metadata",
              "model")


@dataclass(frozen=True)
class Policy:
    """What is allowed for an asset (pure data; validated on construction).

    Attributes
    ----------
    name, description : str
    stages : tuple of str or None
        Allowed codec ids *in order of preference*; ``None`` = the router's table for the asset's kind.
    floors : Floors
        What every reconstruction must meet (lossless candidates are checked bit-exact whatever this says).
    allow_learned : bool
        The learned stage may be tried (only for in-distribution photos within the decode budget).
    lossless_only : bool
        Only bit-exact stages.
    max_abs_error : int or None
        Near-lossless bound (every sample within n), used with JPEG-LS ``near=n``; ``None``/0 = lossless.
    decode_budget_ms_per_mp : float or None
        The clients' decode-time budget for the learned stage, ms per megapixel on ``hardware``.
    hardware : ``"cpu"`` or ``"gpu"``
        Where the clients decode.
    accept : tuple of str or None
        Formats the clients accept (``FORMATS``: avif, webp, jpeg, jxl, png, jls, jp2, inv); ``None`` = any.
    standard_only : bool
        Only standardised formats (no ``.inv``).
    keep_metadata : bool
        Refuse stages whose output cannot carry the image's metadata (ICC, EXIF, XMP, DICOM dataset).
    model : str or None
        The learned model to use (``None`` = the zoo's default).
    source : str
        ``"builtin"`` or the TOML path it came from.
    """

    name: str
    description: str = ""
    stages: tuple[str, ...] | None = None
    floors: Floors = field(default_factory=Floors.delivery)
    allow_learned: bool = False
    lossless_only: bool = False
    max_abs_error: int | None = None
    decode_budget_ms_per_mp: float | None = None
    hardware: str = "cpu"
    accept: tuple[str, ...] | None = None
    standard_only: bool = True
    keep_metadata: bool = False
    model: str | None = None
    source: str = "builtin"

    def __post_init__(self) -> None:
        n = self.name
        if not isinstance(n, str) or not n.strip():
            raise PolicyError("policy: name must be a non-empty string")
        if not isinstance(self.floors, Floors):
            raise PolicyError(f"policy {n}: floors must be a Floors, got {type(self.floors).__name__}")
        if self.hardware not in HARDWARE:
            raise PolicyError(f"policy {n}: hardware must be one of {', '.join(HARDWARE)}, got {self.hardware!r}")
        b = self.decode_budget_ms_per_mp
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0):
            raise PolicyError(f"policy {n}: decode_budget_ms_per_mp must be a positive number, got {b!r}")
        e = self.max_abs_error
        if e is not None and (isinstance(e, bool) or not isinstance(e, int) or e < 0):
            raise PolicyError(f"policy {n}: max_abs_error must be an integer >= 0, got {e!r}")
        if self.stages is not None:
            if not isinstance(self.stages, tuple) or not self.stages:
                raise PolicyError(f"policy {n}: stages must be a non-empty list of codec ids (or omitted)")
            known = _known_codec_ids()
            bad = [s for s in self.stages if s not in known]
            if bad:
                raise PolicyError(f"policy {n}: unknown stage{'s' if len(bad) > 1 else ''} "
                                  f"{', '.join(map(repr, bad))}; available: {', '.join(sorted(known))}")
            if len(set(self.stages)) != len(self.stages):
                raise PolicyError(f"policy {n}: stages lists a codec twice")
        if self.accept is not None:
            bad = [a for a in self.accept if a not in FORMATS]
            if bad or not self.accept:
                raise PolicyError(f"policy {n}: unknown accept format{'s' if len(bad) > 1 else ''} "
                                  f"{', '.join(map(repr, bad)) or '(empty list)'}; known: {', '.join(FORMATS)}")
        # impossible combinations: refuse rather than guess which half the user meant
        if self.allow_learned and self.lossless_only:
            raise PolicyError(f"policy {n}: allow_learned contradicts lossless_only (the learned stage is lossy)")
        if self.allow_learned and self.floors.lossless:
            raise PolicyError(f"policy {n}: allow_learned contradicts floors.lossless (the learned stage is lossy)")
        if self.allow_learned and self.standard_only:
            raise PolicyError(f"policy {n}: allow_learned contradicts standard_only (.inv is not a standard "
                              "format); set standard_only = false")
        if self.allow_learned and self.accept is not None and "inv" not in self.accept:
            raise PolicyError(f"policy {n}: allow_learned but accept does not list 'inv' (the learned stage's "
                              "format)")
        if self.lossless_only and self.max_abs_error:
            raise PolicyError(f"policy {n}: lossless_only contradicts max_abs_error = {self.max_abs_error}")
        if self.lossless_only and not self.floors.lossless:
            raise PolicyError(f"policy {n}: lossless_only needs floors.lossless = true")
        if self.max_abs_error and self.floors.lossless:
            raise PolicyError(f"policy {n}: max_abs_error = {self.max_abs_error} contradicts floors.lossless = "
                              "true")
        if self.stages is not None:
            if self.lossless_only:
                lossy = [s for s in self.stages if s in _LOSSY_ONLY]
                if lossy:
                    raise PolicyError(f"policy {n}: lossless_only but stages lists lossy "
                                      f"{', '.join(lossy)}")
            if "learned" in self.stages and not self.allow_learned:
                raise PolicyError(f"policy {n}: stages lists 'learned' but allow_learned is false")
            if self.accept is not None:
                usable = [s for s in self.stages if CODEC_FORMAT.get(s) in self.accept]
                if not usable:
                    raise PolicyError(f"policy {n}: none of the stages ({', '.join(self.stages)}) produces an "
                                      f"accepted format ({', '.join(self.accept)})")
        if n == "auto" and self.source == "builtin" and self.allow_learned:
            raise PolicyError("policy auto never allows the learned stage")

    # -- (de)serialisation -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; ``Policy.from_dict(p.to_dict()) == p``."""
        return {"name": self.name, "description": self.description,
                "stages": list(self.stages) if self.stages is not None else None,
                "floors": {k: v for k, v in self.floors.to_dict().items()},
                "allow_learned": self.allow_learned, "lossless_only": self.lossless_only,
                "max_abs_error": self.max_abs_error, "decode_budget_ms_per_mp": self.decode_budget_ms_per_mp,
                "hardware": self.hardware, "accept": list(self.accept) if self.accept is not None else None,
                "standard_only": self.standard_only, "keep_metadata": self.keep_metadata, "model": self.model,
                "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "builtin") -> "Policy":
        """Build (and validate) a policy from a mapping — a parsed TOML file or ``to_dict()`` output.

        ``extends = "<built-in>"`` starts from that built-in; setting ``max_abs_error`` without a ``floors``
        table derives the floors (``n > 0``: every sample within n; 0: bit-exact).
        """
        if not isinstance(data, Mapping):
            raise PolicyError(f"policy must be a table/mapping, got {type(data).__name__}")
        data = dict(data)
        data.pop("source", None)
        unknown = sorted(set(data) - set(_TOML_KEYS))
        if unknown:
            raise PolicyError(f"policy {data.get('name', source)}: unknown key{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(map(repr, unknown))}; known: {', '.join(sorted(_TOML_KEYS))}")
        base: dict[str, Any] = {}
        ext = data.pop("extends", None)
        if ext is not None:
            if not isinstance(ext, str) or ext not in _REGISTRY or ext == "auto":
                raise PolicyError(f"policy {data.get('name', source)}: extends {ext!r} is not a built-in policy "
                                  f"to extend; choose one of {', '.join(n for n in BUILTIN_POLICIES if n != 'auto')}")
            parent = _REGISTRY[ext]
            base = {f.name: getattr(parent, f.name) for f in dataclasses.fields(parent)}
            base["description"] = f"extends {ext}"
        if "name" not in data and "name" not in base:
            stem = Path(source).stem if source != "builtin" else ""
            if not stem:
                raise PolicyError("policy: a name is required")
            data["name"] = stem
        elif "name" not in data:
            data["name"] = Path(source).stem if source != "builtin" else base["name"]
        name = str(data["name"])
        kw = dict(base)
        for key, val in data.items():
            if key == "floors":
                continue
            kw[key] = _coerce(name, key, val)
        if "floors" in data:
            if data["floors"] is None:
                kw["floors"] = Floors()
            elif isinstance(data["floors"], Floors):
                kw["floors"] = data["floors"]
            else:
                floors = dict(data["floors"]) if isinstance(data["floors"], Mapping) else data["floors"]
                try:
                    kw["floors"] = Floors.from_dict(floors)
                except PolicyError as exc:
                    raise PolicyError(f"policy {name}: {exc}") from None
        elif "max_abs_error" in data:
            e = kw.get("max_abs_error")
            kw["floors"] = Floors.bounded(e) if e else Floors.lossless_only()
        elif data.get("lossless_only") is True:
            kw["floors"] = Floors.lossless_only()
        elif data.get("allow_learned") is True and "floors" not in base:
            kw["floors"] = Floors.controlled()
        kw["source"] = source
        return cls(**kw)


def _coerce(name: str, key: str, val: Any) -> Any:
    """Type-check one TOML value (TOML has types; a string where a bool belongs is a mistake, not a hint)."""
    def want(ok: bool, what: str) -> None:
        if not ok:
            raise PolicyError(f"policy {name}: {key} must be {what}, got {val!r}")

    if key in ("allow_learned", "lossless_only", "standard_only", "keep_metadata"):
        want(isinstance(val, bool), "true or false")
        return val
    if key in ("name", "description", "hardware", "model"):
        want(val is None or isinstance(val, str), "a string")
        return val
    if key == "max_abs_error":
        want(val is None or (isinstance(val, int) and not isinstance(val, bool)), "an integer >= 0")
        return val
    if key == "decode_budget_ms_per_mp":
        want(val is None or (isinstance(val, (int, float)) and not isinstance(val, bool)), "a positive number")
        return None if val is None else float(val)
    if key in ("stages", "accept"):
        if val is None:
            return None
        want(isinstance(val, (list, tuple)) and all(isinstance(v, str) for v in val), "a list of strings")
        if key == "accept":
            return tuple(_FORMAT_ALIASES.get(v.strip().lower(), v.strip().lower()) for v in val)
        return tuple(v.strip() for v in val)
    return val  # pragma: no cover - every key of _TOML_KEYS is handled above


def _known_codec_ids() -> set[str]:
    """Registered stage ids plus the contract's (a stage family not installed here is still a valid name)."""
    ids = set(KNOWN_CODEC_IDS)
    try:
        from .stages.base import list_stages

        ids |= set(list_stages())
    except Exception:  # noqa: BLE001 - the registry failing must not make every policy unreadable
        pass
    return ids


# ----------------------------------------------------------------------------------------------------------
# Registry (STYLE.md 4): built-ins registered at import; get_policy also reads TOML files
# ----------------------------------------------------------------------------------------------------------
_REGISTRY: dict[str, Policy] = {}


def register_policy(policy: Policy | Callable[[], Policy]) -> Policy:
    """Add a policy (or a zero-argument factory, usable as a decorator) to the registry under its name."""
    p = policy() if callable(policy) and not isinstance(policy, Policy) else policy
    if not isinstance(p, Policy):
        raise TypeError(f"register_policy needs a Policy, got {type(p).__name__}")
    if p.name in _REGISTRY and _REGISTRY[p.name] != p:
        raise ValueError(f"policy {p.name!r} registered twice")
    _REGISTRY[p.name] = p
    return p


def list_policies() -> dict[str, Policy]:
    """Every registered policy by name."""
    return dict(_REGISTRY)


@register_policy
def _auto() -> Policy:
    return Policy("auto", "per asset: DICOM/16-bit/medical -> diagnostic; drawings/screens -> lossless-first "
                  "delivery; photos -> delivery; never controlled", floors=Floors.delivery())


@register_policy
def _archive() -> Policy:
    return Policy("archive", "lossless only, standardised formats, metadata kept, bit-exact verified",
                  stages=None, floors=Floors.lossless_only(), lossless_only=True, keep_metadata=True)


@register_policy
def _diagnostic() -> Policy:
    return Policy("diagnostic", "lossless (or within max_abs_error), DICOM dataset kept, never learned",
                  floors=Floors.lossless_only(), keep_metadata=True)


@register_policy
def _delivery() -> Policy:
    return Policy("delivery", "standard formats clients decode; quality searched to meet the perceptual floor "
                  "at the fewest bytes; line art lossless or near-lossless", floors=Floors.delivery())


@register_policy
def _controlled() -> Policy:
    return Policy("controlled", "delivery plus the learned stage first for in-distribution photos within the "
                  "decode budget (clients run our decoder)", floors=Floors.controlled(), allow_learned=True,
                  standard_only=False, decode_budget_ms_per_mp=10000.0, hardware="cpu")


def load_policy_file(path: str | os.PathLike[str]) -> Policy:
    """Read a policy TOML file (see the module docstring); :class:`PolicyError` names the file and problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PolicyError(f"policy file {p}: cannot read ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"policy file {p}: not valid TOML ({exc})") from None
    try:
        return Policy.from_dict(data, source=str(p))
    except PolicyError as exc:
        raise PolicyError(f"{p}: {exc}") from None


def get_policy(spec: "str | os.PathLike[str] | Policy") -> Policy:
    """A built-in policy by name, a policy TOML file by path, or ``spec`` itself if it is a :class:`Policy`.

    Examples
    --------
    >>> get_policy("diagnostic").keep_metadata
    True
    >>> get_policy("fast")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    inverity.errors.UnknownIdError: unknown policy 'fast'; available: archive, auto, controlled, ...
    """
    if isinstance(spec, Policy):
        return spec
    s = os.fspath(spec)
    if s in _REGISTRY:
        return _REGISTRY[s]
    if s.lower().endswith(".toml") or os.sep in s or Path(s).is_file():
        return load_policy_file(s)
    raise UnknownIdError("policy", s, [*_REGISTRY, "or a .toml file"])  # sorts last: reads as a sentence


def example_policies() -> dict[str, Path]:
    """The example policy files shipped in ``inverity/policies/`` by name."""
    d = Path(__file__).resolve().parent / "policies"
    return {p.stem: p for p in sorted(d.glob("*.toml"))}
