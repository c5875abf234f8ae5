"""Policies: what a user allows for an asset — pure data, no codec logic.

A :class:`Policy` says which stages may be used (or ``None``: the router's per-kind preference table), which
floors a reconstruction must meet (:class:`inverity.verify.Floors`), whether the learned stage is allowed and
on what decode budget and hardware, which formats the clients accept, and whether metadata must survive.
The router (:mod:`inverity.route`) turns a policy plus a :class:`~inverity.analyse.Profile` into an ordered
list of candidates; the pipeline encodes and verifies them.

Built-ins (DESIGN.md "Policies") are TOML files shipped in ``inverity/policies/builtin/`` and read by the same
loader as a user's file (only ``auto``, a resolver, is defined in code):

============  ================================================================================================
``archive``     lossless only, standardised formats (PNG, JPEG 2000, JPEG-LS, JPEG XL lossless), metadata kept,
                bit-exact round trip verified, never learned; never bigger than the input: keeping the
                original file is a candidate, and a JPEG is transcoded losslessly to JPEG XL (``jxl-jpeg``,
                the JPEG restorable byte for byte) rather than re-encoded as pixels
``diagnostic``  lossless by default, or every sample within ``max_abs_error`` (JPEG-LS near-lossless); never
                learned; DICOM keeps its dataset and gets a lossless transfer syntax
``delivery``    formats every major browser decodes (AVIF, WebP, JPEG, PNG; JPEG XL only where a policy's
                ``accept`` names it), quality searched per image to meet a perceptual floor at the fewest
                bytes; line art/screens lossless where that is smaller; never learned
``controlled``  delivery plus the learned stage, competing with the classical candidates (smallest passing
                wins) for in-distribution photos within the decode budget on the declared hardware, verified
                with the structure checks as well; review ``learned``
``auto``        picks archive/diagnostic/delivery per asset (:func:`inverity.route.resolve_policy`); never
                ``controlled``: the learned stage is always the user's explicit choice
============  ================================================================================================

Nothing outside this module keys behaviour on those names: what a policy does is its data. Besides floors,
``accept``, ``metadata``, ``review`` and ``effort``:

``preferences``   content kind -> list of groups, each a list of stage ids (``"jpegls?near=2"`` adds stage
                  options); ``"*"`` is required and covers every kind not named. Stages in one group compete
                  (the smallest passing wins); a later group is only a fallback (:mod:`inverity.route`). ``stages``
                  (one order for every kind) is the alternative; a file gives one or the other.
``dicom_out``     a DICOM input is written back as DICOM (dataset intact, lossless transfer syntax)
``lossless_only`` only bit-exact stages; ``bounded_only``: lossless or near-lossless stages, never lossy ones
``allow_learned`` the learned stage may be tried; ``uses_gpu``: the stages may run on a GPU (default: as
                  ``allow_learned``), so the Ray engine asks for one

A new kind of policy is a new TOML file, no code::

    # print.toml: drawings as PNG, else JPEG; photos as JPEG
    description = "print shop: PNG for line art, JPEG otherwise"
    accept = ["png", "jpeg"]
    metadata = "strip"
    [floors]
    ssimulacra2 = 80
    [preferences]
    drawing = [["png"], ["jpeg"]]
    "*" = [["jpeg"], ["png"]]

User policies are TOML files; every key is checked, and contradictions are refused with a one-line
:class:`~inverity.errors.PolicyError`::

    # web.toml
    extends = "delivery"            # start from a built-in (optional)
    description = "browsers: AVIF, WebP or JPEG"
    accept = ["avif", "webp", "jpeg"]
    metadata = "strip"              # keep | strip | refuse (see below)
    review = "none"                 # none | required | learned | sample:P (0 < P <= 1)
    effort = "balanced"             # fast | balanced | max (how hard the quality search works)
    [floors]
    ssimulacra2 = 75                # stricter than delivery's 70: fine, nothing to declare
    local_snr = false               # removes delivery's local_snr check: recorded in every decision record

A policy that ``extends`` a built-in inherits all of it; its ``[preferences]`` table is merged **per kind** (a
kind it names gets the file's groups, the others keep the parent's). Floors of a policy that ``extends`` another
are merged with the parent's **key by key**: a key the file does not name keeps the parent's value. Loosening
or removing a check is allowed, but only by writing it in the file, and it is never silent: ``key = false``
removes a check (``lossless = false`` too), a value weaker than the parent's loosens it, and each such change
becomes a note (``Policy.floor_notes``) that the pipeline writes into every decision record — ``"floor
local_snr removed by policy web"``, ``"floor ssimulacra2 loosened 70 -> 50 by policy x"``. ``max_abs_error = n`` on a lossless parent removes ``lossless`` the same, recorded way.
Without ``extends`` the ``[floors]`` table is the whole set of floors (there is no parent to lose checks from).

``metadata`` says what happens to metadata (DICOM dataset, ICC profile, EXIF, XMP) an output cannot carry:
``keep`` — only stages whose output carries all of it are candidates; if none can, the asset is refused with an
error naming what would be lost; ``strip`` — the output carries what its format can and the rest is dropped and
named in the record (``metadata``: kept/dropped) and the CLI summary; ``refuse`` — routing ignores metadata, but
an asset whose chosen output would drop any is refused rather than written. Built-in defaults: archive and
diagnostic ``keep``; delivery and controlled ``strip``. (``keep_metadata = true`` is the older spelling of
``metadata = "keep"``.)

``review`` (default ``none``; ``learned`` under controlled) and ``effort`` (default ``balanced``) are parsed,
validated and recorded here (``review_policy``/``effort`` in every decision record); the review workflow and
the quality search act on them.

Shipped example policies (``inverity/policies/*.toml``: ``web``, ``radiology-near-lossless``,
``gpu-controlled``, ``archive-png``) are usable by name from any directory: ``--policy web``.

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
import importlib.resources
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from . import formats as _formats
from ._preferences import Preferences, check_preferences, parse_entry
from .errors import PolicyError, UnknownIdError
from .verify import Floors
from .verify_checks import check_names

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pyproject pins tomli for 3.10
    import tomli as tomllib

__all__ = ["Policy", "Preferences", "BUILTIN_POLICIES", "HARDWARE", "FORMATS", "CODEC_FORMAT", "KNOWN_CODEC_IDS",
           "METADATA_MODES", "REVIEW_MODES", "EFFORTS", "BROWSER_FORMATS", "get_policy", "register_policy",
           "list_policies", "load_policy_file", "example_policies", "merge_floors", "client_format", "parse_entry"]

#: the built-in policy names (contract): ``auto`` (a resolver, :func:`inverity.route.resolve_policy`) and one TOML
#: file each in ``inverity/policies/builtin/`` (the test suite checks the folder holds exactly these)
BUILTIN_POLICIES = ("auto", "archive", "diagnostic", "delivery", "controlled")
HARDWARE = ("cpu", "gpu")
#: what happens to metadata an output cannot carry (module docstring)
METADATA_MODES = ("keep", "strip", "refuse")
#: which outputs wait for a human verdict; ``sample:P`` = a random share P (0 < P <= 1) of them
REVIEW_MODES = ("none", "required", "learned", "sample:P")
#: how hard the quality search works
EFFORTS = ("fast", "balanced", "max")
#: what every major browser decodes (Chromium, Firefox, Safari): delivery's default ``accept``
BROWSER_FORMATS = _formats.browser_formats()

#: delivery formats a client may accept, and the stage ids that produce each (``accept`` is checked against it);
#: a view of each stage's ``Capabilities.format`` (inverity.formats)
CODEC_FORMAT: dict[str, str] = _formats.stage_client_formats()
#: ``"*"`` above: the stage writes the input's own format (``original``), checked per asset by the router
FORMATS = tuple(sorted(set(CODEC_FORMAT.values()) - {"*"}))
_FORMAT_ALIASES = _formats.accept_aliases(set(FORMATS))


def client_format(codec_id: str, source_format: str | None = None) -> str | None:
    """The accept-list format a stage writes (``original``: the input's format, by its sniffed name).

    Examples
    --------
    >>> client_format("webp-lossless"), client_format("original", "png"), client_format("original", "jpegls")
    ('webp', 'png', 'jls')
    """
    fmt = CODEC_FORMAT.get(codec_id)
    if fmt == "*":
        return _FORMAT_ALIASES.get(source_format or "", source_format) if source_format else None
    return fmt


#: the codec ids of the stage contract (used when the stage registry cannot be imported)
KNOWN_CODEC_IDS = tuple(CODEC_FORMAT)
#: stages that only ever lose information (refused by ``lossless_only``)
_LOSSY_ONLY = ("jpeg", "webp", "avif", "jxl", "learned")

_TOML_KEYS = ("name", "description", "extends", "stages", "floors", "allow_learned", "lossless_only",
              "max_abs_error", "decode_budget_ms_per_mp", "hardware", "accept", "standard_only", "keep_metadata",
              "model", "metadata", "review", "effort", "floor_notes", "preferences", "dicom_out", "bounded_only",
              "uses_gpu")


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
        ``metadata == "keep"`` (the older spelling; the two are kept in agreement).
    metadata : ``"keep"``, ``"strip"`` or ``"refuse"``
        What happens to metadata (ICC, EXIF, XMP, DICOM dataset) an output cannot carry (module docstring);
        ``None`` on construction = from ``keep_metadata``.
    review : str
        ``none``, ``required``, ``learned`` or ``sample:P``: which outputs wait for a human verdict.
    effort : str
        ``fast``, ``balanced`` or ``max``: how hard the quality search works (:mod:`inverity.search`; ``max`` is
        the exhaustive reference).
    floor_notes : tuple of str
        Each floor this policy loosened or removed relative to the policy it extends (written into every
        decision record).
    model : str or None
        The learned model to use (``None`` = the zoo's default).
    preferences : Preferences or None
        Content kind -> groups of stage entries (``"*"``: any kind not named), the router's order when
        ``stages`` is ``None``; a policy with neither cannot route (``extends`` a built-in to inherit its table).
    dicom_out : bool
        A DICOM input is written back as DICOM (dataset intact, pixels in a lossless transfer syntax).
    bounded_only : bool
        Only lossless or bounded-error (near-lossless) stages are tried, never a lossy one (``lossless_only``
        also refuses near-lossless).
    uses_gpu : bool
        The policy's stages may run on a GPU (the Ray engine then asks for a GPU fraction); ``None`` on
        construction = ``allow_learned``.
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
    metadata: str | None = None
    review: str = "none"
    effort: str = "balanced"
    floor_notes: tuple[str, ...] = ()
    preferences: Preferences | None = None
    dicom_out: bool = False
    bounded_only: bool = False
    uses_gpu: bool | None = None

    def __post_init__(self) -> None:
        n = self.name
        if not isinstance(n, str) or not n.strip():
            raise PolicyError("policy: name must be a non-empty string")
        self._check_modes(n)
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
        if self.allow_learned and self.bounded_only:
            raise PolicyError(f"policy {n}: allow_learned contradicts bounded_only (the learned stage is lossy)")
        for key in ("dicom_out", "bounded_only"):
            if not isinstance(getattr(self, key), bool):
                raise PolicyError(f"policy {n}: {key} must be true or false, got {getattr(self, key)!r}")
        if self.uses_gpu is None:
            object.__setattr__(self, "uses_gpu", self.allow_learned)
        elif not isinstance(self.uses_gpu, bool):
            raise PolicyError(f"policy {n}: uses_gpu must be true or false, got {self.uses_gpu!r}")
        if self.preferences is not None:
            object.__setattr__(self, "preferences", check_preferences(n, self.preferences, _known_codec_ids()))
        if n == "auto" and self.source == "builtin" and self.allow_learned:
            raise PolicyError("policy auto never allows the learned stage")

    def _check_modes(self, n: str) -> None:
        """Validate ``metadata``/``review``/``effort`` and reconcile ``metadata`` with ``keep_metadata``."""
        m = self.metadata
        if m is None:
            object.__setattr__(self, "metadata", "keep" if self.keep_metadata else "strip")
        elif m not in METADATA_MODES:
            raise PolicyError(f"policy {n}: metadata must be one of {', '.join(METADATA_MODES)}, got {m!r}")
        elif self.keep_metadata and m != "keep":
            raise PolicyError(f"policy {n}: keep_metadata = true contradicts metadata = {m!r}")
        else:
            object.__setattr__(self, "keep_metadata", m == "keep")
        if self.effort not in EFFORTS:
            raise PolicyError(f"policy {n}: effort must be one of {', '.join(EFFORTS)}, got {self.effort!r}")
        r = self.review
        if not isinstance(r, str) or (r not in REVIEW_MODES[:3] and _sample_share(r) is None):
            raise PolicyError(f"policy {n}: review must be one of none, required, learned or sample:P with "
                              f"0 < P <= 1 (e.g. sample:0.05), got {r!r}")
        if not isinstance(self.floor_notes, tuple) or not all(isinstance(x, str) for x in self.floor_notes):
            raise PolicyError(f"policy {n}: floor_notes must be a list of strings")

    @property
    def review_sample(self) -> float | None:
        """The share P of ``review = "sample:P"`` (``None`` for the other review modes).

        Examples
        --------
        >>> Policy("x", review="sample:0.25").review_sample
        0.25
        """
        return _sample_share(self.review)

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
                "metadata": self.metadata, "review": self.review, "effort": self.effort,
                "floor_notes": list(self.floor_notes),
                "preferences": self.preferences.to_dict() if self.preferences is not None else None,
                "dicom_out": self.dicom_out, "bounded_only": self.bounded_only, "uses_gpu": self.uses_gpu,
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
            if key in ("floors", "preferences"):
                continue
            kw[key] = _coerce(name, key, val)
        _merge_preferences(name, data, kw, base.get("preferences"))
        if "allow_learned" in data and "uses_gpu" not in data:
            kw["uses_gpu"] = None                                    # follows the file's allow_learned
        # the two spellings of the metadata mode: the one the file names wins, the other follows it
        if "keep_metadata" in data and "metadata" not in data:
            kw["metadata"] = None
        elif "metadata" in data and "keep_metadata" not in data:
            kw["keep_metadata"] = False
        parent_floors: Floors | None = base.get("floors") if ext is not None else None
        table: Mapping[str, Any] | None = None
        why = ""
        if "floors" in data:
            if data["floors"] is None:
                kw["floors"] = Floors()
            elif isinstance(data["floors"], Floors):
                kw["floors"] = data["floors"]
            elif not isinstance(data["floors"], Mapping):
                raise PolicyError(f"policy {name}: floors must be a table, got {type(data['floors']).__name__}")
            else:
                table = data["floors"]
        elif "max_abs_error" in data:
            e = kw.get("max_abs_error")
            table = {"max_abs_error": e, "lossless": False} if e else {"lossless": True, "max_abs_error": None}
            why = f" (max_abs_error = {e}: every sample within {e} instead)"
            if parent_floors is None:
                kw["floors"], table = (Floors.bounded(e) if e else Floors.lossless_only()), None
        elif data.get("lossless_only") is True:
            table = {"lossless": True}
            if parent_floors is None:
                kw["floors"], table = Floors.lossless_only(), None
        elif data.get("allow_learned") is True and "floors" not in base:
            kw["floors"] = Floors.controlled()
        if table is not None:
            try:
                kw["floors"], notes = merge_floors(parent_floors, table, name)
            except PolicyError as exc:
                raise PolicyError(f"policy {name}: {exc}") from None
            kw["floor_notes"] = tuple(kw.get("floor_notes") or ()) + tuple(n + why for n in notes)
        kw["source"] = source
        return cls(**kw)


def _merge_preferences(name: str, data: Mapping[str, Any], kw: dict[str, Any], parent: Preferences | None) -> None:
    """Put the policy's preferences into ``kw``: the file's ``[preferences]`` table merged over the parent's
    *per kind* (a kind the file names replaces the parent's groups for it; the others are kept). A file may give
    ``stages`` or ``[preferences]``, not both (:func:`_policy_from_toml`); naming the table drops inherited stages
    (``to_dict`` output may hold both: ``stages`` then wins, as in the router)."""
    if "preferences" not in data:
        return
    table = data["preferences"]
    if table is None:
        kw["preferences"] = None
        return
    if not isinstance(table, Mapping):
        raise PolicyError(f"policy {name}: preferences must be a table (content kind -> list of groups of stage "
                          f"ids), got {type(table).__name__}")
    merged: dict[str, Any] = dict(parent.to_dict()) if parent is not None else {}
    merged.update(table)
    kw["preferences"] = merged
    if "stages" not in data:
        kw["stages"] = None


#: floors where a higher value is stricter, and where a lower one is (the rest of the numeric fields are
#: parameters of a check — tile size, window, thresholds — whose change is recorded without a direction)
_HIGHER_IS_STRICTER = check_names(stricter="higher")   # the check classes say which way is stricter
_LOWER_IS_STRICTER = check_names(stricter="lower")


def merge_floors(parent: Floors | None, table: Mapping[str, Any], policy: str) -> tuple[Floors, list[str]]:
    """``parent`` updated key by key from a ``[floors]`` table, and one note per loosened or removed check.

    ``key = false`` (or ``None``) removes a check; a value weaker than the parent's loosens it; a stricter
    value or a new check needs no note. ``parent=None`` (no ``extends``): the table is the whole set of floors.

    Examples
    --------
    >>> f, notes = merge_floors(Floors.delivery(), {"ssimulacra2": 60, "local_snr": False, "psnr": 30}, "x")
    >>> f.ssimulacra2, f.local_snr, f.psnr
    (60.0, None, 30.0)
    >>> notes
    ['floor ssimulacra2 loosened 70 -> 60 by policy x', 'floor local_snr removed by policy x']
    """
    start = (parent or Floors()).to_dict()
    removed = [k for k, v in table.items() if v is None or (v is False and k != "lossless")]
    params = [k for k in removed if k in start and k != "lossless" and k not in _HIGHER_IS_STRICTER
              and k not in _LOWER_IS_STRICTER]
    if params:
        raise PolicyError(f"floors: {', '.join(params)} {'is a parameter' if len(params) == 1 else 'are parameters'}"
                          " of a check, not a check; it cannot be removed (remove the check instead)")
    given = Floors.from_dict({k: v for k, v in table.items() if k not in removed})  # unknown keys, types
    merged = dict(start)
    for k in table:
        merged[k] = None if k in removed else getattr(given, k)
    floors = Floors(**merged)
    notes: list[str] = []
    if parent is not None:
        for k in table:
            note = _floor_change(k, start[k], merged[k], policy)
            if note:
                notes.append(note)
    return floors, notes


def _floor_change(key: str, old: Any, new: Any, policy: str) -> str | None:
    """The record's note for one floor a policy changed, or None when the change is not a weakening."""
    if old == new:
        return None
    if key == "lossless":
        return f"floor lossless removed by policy {policy}" if old and not new else None
    if key in _HIGHER_IS_STRICTER or key in _LOWER_IS_STRICTER:
        if new is None:
            return f"floor {key} removed by policy {policy}" if old is not None else None
        if old is None:
            return None                                   # a new check: stricter
        weaker = new < old if key in _HIGHER_IS_STRICTER else new > old
        return f"floor {key} loosened {old:g} -> {new:g} by policy {policy}" if weaker else None
    # a parameter may be unset (None): e.g. local_snr_visible, whose absence means the single-window rule
    return (f"floor parameter {key} changed {'unset' if old is None else f'{old:g}'} -> "
            f"{'unset' if new is None else f'{new:g}'} by policy {policy}")


def _sample_share(review: Any) -> float | None:
    """P of ``"sample:P"`` when 0 < P <= 1, else None."""
    if not isinstance(review, str) or not review.startswith("sample:"):
        return None
    try:
        p = float(review[len("sample:"):])
    except ValueError:
        return None
    return p if math.isfinite(p) and 0 < p <= 1 else None


def _coerce(name: str, key: str, val: Any) -> Any:
    """Type-check one TOML value (TOML has types; a string where a bool belongs is a mistake, not a hint)."""
    def want(ok: bool, what: str) -> None:
        if not ok:
            raise PolicyError(f"policy {name}: {key} must be {what}, got {val!r}")

    if key in ("allow_learned", "lossless_only", "standard_only", "keep_metadata", "dicom_out", "bounded_only",
               "uses_gpu"):
        want(isinstance(val, bool), "true or false")
        return val
    if key in ("name", "description", "hardware", "model"):
        want(val is None or isinstance(val, str), "a string")
        return val
    if key in ("metadata", "review", "effort"):
        want(isinstance(val, str), "a string")
        return val.strip().lower()
    if key == "floor_notes":
        want(isinstance(val, (list, tuple)) and all(isinstance(v, str) for v in val), "a list of strings")
        return tuple(val)
    if key == "max_abs_error":
        want(val is None or (isinstance(val, int) and not isinstance(val, bool)), "an integer >= 0")
        return val
    if key == "decode_budget_ms_per_mp":
        want(val is None or (isinstance(val, (int, float)) and not isinstance(val, bool)), "a positive number")
        return None if val is None else float(val)
    if key in ("stages", "accept"):
        if val is None:
            return None
        if key == "accept" and isinstance(val, str) and val.strip().lower() == "browsers":
            return BROWSER_FORMATS          # every major browser's formats, as the format registry says
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


def _builtin_files() -> dict[str, Any]:
    """The built-in policies' TOML files (``inverity/policies/builtin/*.toml``) by stem, as package resources."""
    folder = importlib.resources.files("inverity") / "policies" / "builtin"
    return {e.name[: -len(".toml")]: e for e in sorted(folder.iterdir(), key=lambda e: e.name)
            if e.name.endswith(".toml") and e.is_file()}


def _register_builtins() -> None:
    """Read each built-in's TOML file with the loader user files go through (no policy is defined in code but
    ``auto``, which is a resolver); ``source`` stays ``"builtin"``."""
    for stem, entry in _builtin_files().items():
        pol = _policy_from_toml(entry.read_bytes(), f"inverity/policies/builtin/{entry.name}")
        if pol.name != stem:
            raise PolicyError(f"inverity/policies/builtin/{entry.name}: name {pol.name!r} differs from the file's")
        register_policy(dataclasses.replace(pol, source="builtin"))


def load_policy_file(path: str | os.PathLike[str]) -> Policy:
    """Read a policy TOML file (see the module docstring); :class:`PolicyError` names the file and problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PolicyError(f"policy file {p}: cannot read ({exc.strerror or exc})") from None
    return _policy_from_toml(raw, p)


def _policy_from_toml(raw: bytes, p: Any) -> Policy:
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"policy file {p}: not valid TOML ({exc})") from None
    if isinstance(data.get("stages"), list) and isinstance(data.get("preferences"), dict):
        raise PolicyError(f"{p}: policy {data.get('name', Path(str(p)).stem)}: give stages (one order for every "
                          "kind) or [preferences] (groups per kind), not both")
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
    inverity.errors.UnknownIdError: unknown policy 'fast'; available: archive, archive-png, auto, ...
    """
    if isinstance(spec, Policy):
        return spec
    s = os.fspath(spec)
    if s in _REGISTRY:
        return _REGISTRY[s]
    if s.lower().endswith(".toml") or os.sep in s or Path(s).is_file():
        return load_policy_file(s)
    shipped = _shipped_policies()
    if s in shipped:                      # a shipped example by name, from any directory
        return _policy_from_toml(shipped[s].read_bytes(), shipped[s])
    err = UnknownIdError("policy", s, [*_REGISTRY, *shipped])
    err.args = (f"{err} (or a policy .toml file)",)
    raise err


def _shipped_policies() -> dict[str, Any]:
    """The ``*.toml`` files in the package's ``policies/`` data folder (importlib.resources: works installed,
    zipped or from a source tree), by stem."""
    try:
        folder = importlib.resources.files("inverity") / "policies"
        return {e.name[: -len(".toml")]: e for e in sorted(folder.iterdir(), key=lambda e: e.name)
                if e.name.endswith(".toml") and e.is_file()}
    except (FileNotFoundError, NotADirectoryError, ModuleNotFoundError):  # pragma: no cover - broken install
        return {}


def example_policies() -> dict[str, Path]:
    """The example policy files shipped in ``inverity/policies/`` by name (usable by name: ``get_policy("web")``)."""
    return {name: Path(str(entry)) for name, entry in _shipped_policies().items()}


_register_builtins()
