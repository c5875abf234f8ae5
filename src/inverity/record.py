"""The decision record: one type, one constructor, one JSON form (DESIGN.md "Decision record").

Every asset the pipeline touches gets a :class:`DecisionRecord` — what was tried, what the verifier measured,
what was written and why. The pipeline and its helpers (:mod:`inverity._promises`, :mod:`inverity.search`)
fill one in as the asset goes through the arrows; :meth:`DecisionRecord.to_dict` is the JSON the CLI prints
(``--json``), the catalog stores and every reader (the audit page, ``inspect``, the server, review) reads back
with :meth:`DecisionRecord.from_dict`, which refuses anything malformed with a :class:`RecordError`.

A record grows in steps, and its JSON has exactly the keys of the steps it reached::

    always      version input input_sha256 input_bytes output bytes policy policy_id policy_resolved stage quality
                profile attempts checks reasons status error elapsed_ms           (+ input_path once it is known)
    loaded      input_format width height channels bit_depth                      (width is set)
    policy      review_policy effort floor_changes                                (review_policy is set)
    written     output_rel output_sha256 options codec_config ratio               (output_rel is set)
    when true   grew restores_input
    when set    search metadata container transfer_syntax review kept_previous

Keys other modules add to a record they keep (the server's ``id``, ``filename``, ``media_types``) travel in
:attr:`DecisionRecord.extra`, so a record read and written back is the same JSON. ``checks["worst_windows"]``
(where each localising check is worst) is held as :class:`~inverity.verify_types.Box` values.

Examples
--------
>>> r = DecisionRecord(input="a.png", input_sha256="0" * 64, input_bytes=10)
>>> r.reasons.append("policy delivery: clients not controlled")
>>> d = r.to_dict()
>>> d["status"], d["output"], "width" in d
('failed', None, False)
>>> DecisionRecord.from_dict(d) == r
True
>>> DecisionRecord.from_dict({"input": 3})
Traceback (most recent call last):
...
inverity.errors.RecordError: not a decision record: 'input' must be a string, got int
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from .errors import RecordError
from .verify_types import Box

__all__ = ["DecisionRecord", "RecordError", "RECORD_KEYS", "STATUSES", "package_version", "jsonable"]

#: the keys every record has (DESIGN.md's minimum plus provenance)
RECORD_KEYS: tuple[str, ...] = (
    "input", "output", "bytes", "policy", "stage", "quality", "profile", "attempts", "checks", "reasons",
    "input_sha256", "input_bytes", "policy_resolved", "elapsed_ms", "version", "status",
)
#: what became of an asset: written, nothing written, or resumed from the catalog
STATUSES: tuple[str, ...] = ("done", "failed", "skipped")

#: every record's keys, written even when ``None``
_ALWAYS = ("version", "input", "input_sha256", "input_bytes", "output", "bytes", "policy", "policy_id",
           "policy_resolved", "stage", "quality", "profile", "attempts", "checks", "reasons", "status", "error",
           "elapsed_ms")
#: keys written together, once the step that sets the first one was reached (see the module docstring)
_GROUPS: tuple[tuple[str, ...], ...] = (
    ("width", "input_format", "height", "channels", "bit_depth"),
    ("review_policy", "effort", "floor_changes"),
    ("output_rel", "output_sha256", "options", "codec_config", "ratio"),
)
_WHEN_TRUE = ("grew", "restores_input")
_WHEN_SET = ("input_path", "search", "metadata", "container", "transfer_syntax", "review", "kept_previous")

# field name -> the JSON types it may hold (None is always allowed for the optional ones)
_STR: tuple[type, ...] = (str,)
_INT: tuple[type, ...] = (int,)
_NUM: tuple[type, ...] = (int, float)
_DICT: tuple[type, ...] = (dict,)
_LIST: tuple[type, ...] = (list,)
_WANT = {_STR: "a string", _INT: "an integer", _NUM: "a number", _DICT: "an object", _LIST: "a list",
         (bool,): "true or false"}
_TYPES: dict[str, tuple[type, ...]] = {
    "version": _STR, "input_sha256": _STR, "input_bytes": _INT, "output": _STR, "bytes": _INT,
    "policy": _STR, "policy_id": _STR, "policy_resolved": _STR, "stage": _STR, "quality": _INT,
    "error": _STR, "elapsed_ms": _NUM, "input_path": _STR,
    "input_format": _STR, "width": _INT, "height": _INT, "channels": _INT, "bit_depth": _INT,
    "review_policy": _STR, "effort": _STR, "floor_changes": _LIST,
    "output_rel": _STR, "output_sha256": _STR, "options": _DICT, "codec_config": _DICT, "ratio": _NUM,
    "grew": (bool,), "restores_input": (bool,),
    "search": _DICT, "metadata": _DICT, "container": _STR, "transfer_syntax": _STR, "review": _DICT,
    "kept_previous": _DICT,
}


def package_version() -> str:
    """The installed inverity version (``0+unknown`` when running from a source tree without metadata)."""
    try:
        from importlib.metadata import version

        return version("inverity")
    except Exception:  # noqa: BLE001 - no package metadata
        return "0+unknown"


def jsonable(x: Any) -> Any:
    """Numpy scalars/arrays, tuples, paths and dataclass-ish values made JSON-serialisable (recursively);
    NaN and infinities (PSNR of identical pixels) become ``None``.

    Examples
    --------
    >>> import numpy as np
    >>> jsonable({"a": np.float32(0.5), "b": (1, float("inf")), 3: np.arange(2)})
    {'a': 0.5, 'b': [1, None], '3': [0, 1]}
    """
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        return x
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if hasattr(x, "item") and getattr(x, "shape", None) == ():   # numpy scalar
        return jsonable(x.item())
    if hasattr(x, "tolist"):
        return jsonable(x.tolist())
    if hasattr(x, "to_dict"):
        return jsonable(x.to_dict())
    return str(x)


@dataclass
class DecisionRecord:
    """What became of one asset, and why (every field is a key of the JSON form; see the module docstring).

    Build one with the constructor (``DecisionRecord(input=...)``) or read one with :meth:`from_dict` /
    :meth:`from_json`; the pipeline fills the rest in as it goes. ``attempts`` holds one JSON-ready dict per
    encode tried (``stage``, ``quality``, ``bytes``, ``passed``, ``reasons``, timings; ``chosen`` on the one
    written); ``checks`` the chosen output's measured numbers without ``worst_windows``, which is
    :attr:`worst_windows` (``None`` when the verifier reported none at all).
    """

    input: str
    version: str = field(default_factory=package_version)
    input_sha256: str | None = None
    input_bytes: int | None = None
    input_path: str | None = None
    output: str | None = None
    bytes: int | None = None
    policy: str | None = None
    policy_id: str | None = None
    policy_resolved: str | None = None
    stage: str | None = None
    quality: int | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    worst_windows: list[Box] | None = None
    reasons: list[str] = field(default_factory=list)
    status: str = "failed"
    error: str | None = None
    elapsed_ms: float | None = None
    # loaded
    input_format: str | None = None
    width: int | None = None
    height: int | None = None
    channels: int | None = None
    bit_depth: int | None = None
    # policy
    review_policy: str | None = None
    effort: str | None = None
    floor_changes: list[str] | None = None
    # written
    output_rel: str | None = None
    output_sha256: str | None = None
    options: dict[str, Any] | None = None
    codec_config: dict[str, Any] | None = None
    ratio: float | None = None
    # flags and optional parts
    grew: bool = False
    restores_input: bool = False
    search: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    container: str | None = None
    transfer_syntax: str | None = None
    review: dict[str, Any] | None = None
    kept_previous: dict[str, Any] | None = None
    #: keys other modules added (the server's ``id``, ``filename``, ``media_types``), kept as they were
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self)
        if "worst_windows" in self.checks:
            self.set_checks(self.checks)

    # -- views ------------------------------------------------------------------------------------------------
    def set_checks(self, checks: Mapping[str, Any]) -> None:
        """Take a verdict's ``checks`` (as :func:`inverity.search` records them): ``worst_windows`` become boxes."""
        rest = dict(checks)
        raw = rest.pop("worst_windows", None)
        self.checks = rest
        self.worst_windows = None if raw is None else _boxes(raw, "checks.worst_windows", self.input)

    def chosen_attempt(self) -> dict[str, Any] | None:
        """The attempt whose output was written (``chosen``), if any."""
        return next((a for a in self.attempts if a.get("chosen")), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (a fresh dict; lists and dicts are shared with the record, not copied)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _ALWAYS}
        checks = dict(self.checks)
        if self.worst_windows is not None:
            checks["worst_windows"] = [b.to_dict() for b in self.worst_windows]
        out["checks"] = checks
        for group in _GROUPS:
            if getattr(self, group[0]) is not None:
                out.update((k, getattr(self, k)) for k in group)
        out.update((k, True) for k in _WHEN_TRUE if getattr(self, k))
        out.update((k, getattr(self, k)) for k in _WHEN_SET if getattr(self, k) is not None)
        out.update(self.extra)
        return out

    def to_json(self, **kw: Any) -> str:
        """``json.dumps(self.to_dict())`` with sorted keys (the CLI's and the catalog's form)."""
        kw.setdefault("sort_keys", True)
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DecisionRecord":
        """Read a record (from JSON, the catalog, an ``.inv`` header); :class:`RecordError` naming the first
        problem when it is not one: not a mapping, ``input`` missing, a key of the wrong type, an unknown
        ``status``, a malformed attempt or worst window."""
        if not isinstance(d, Mapping):
            raise RecordError(f"not a decision record: a {type(d).__name__}, not a JSON object")
        if "input" not in d:
            raise RecordError("not a decision record: no 'input'")
        known = {f.name for f in fields(cls)} - {"worst_windows", "extra"}
        kw: dict[str, Any] = {k: d[k] for k in known if k in d}
        kw["extra"] = {k: v for k, v in d.items() if k not in known}
        for k in ("profile", "checks"):
            if kw.get(k) is None:
                kw[k] = {}
        for k in ("attempts", "reasons"):
            if kw.get(k) is None:
                kw[k] = []
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str | bytes) -> "DecisionRecord":
        """:meth:`from_dict` of a JSON document; invalid JSON is a :class:`RecordError` too."""
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise RecordError(f"not a decision record: invalid JSON ({exc})") from None
        return cls.from_dict(d)


def _boxes(raw: Any, where: str, name: str) -> list[Box]:
    if not isinstance(raw, (list, tuple)):
        raise RecordError(f"{name}: not a decision record: '{where}' must be a list of boxes, "
                          f"got {type(raw).__name__}")
    try:
        return [b if isinstance(b, Box) else Box.from_dict(b) for b in raw]
    except ValueError as exc:
        raise RecordError(f"{name}: not a decision record: '{where}': {exc}") from None


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _check(r: DecisionRecord) -> None:
    """Refuse a record whose fields do not have their JSON types (the constructor's one check)."""
    if not isinstance(r.input, str):
        raise RecordError(f"not a decision record: 'input' must be a string, got {_type_name(r.input)}")
    if r.status not in STATUSES:
        raise RecordError(f"{r.input}: not a decision record: status {r.status!r} is not one of "
                          f"{', '.join(STATUSES)}")
    for name, types in _TYPES.items():
        v = getattr(r, name)
        bad = isinstance(v, bool) and bool not in types     # True is an int to Python, not to a record
        if v is not None and (bad or not isinstance(v, types)):
            raise RecordError(f"{r.input}: not a decision record: {name!r} must be {_WANT[types]}, "
                              f"got {_type_name(v)}")
    for name in ("profile", "checks"):
        if not isinstance(getattr(r, name), dict):
            raise RecordError(f"{r.input}: not a decision record: {name!r} must be an object, "
                              f"got {_type_name(getattr(r, name))}")
    if not isinstance(r.reasons, list) or not all(isinstance(x, str) for x in r.reasons):
        raise RecordError(f"{r.input}: not a decision record: 'reasons' must be a list of strings")
    if not isinstance(r.attempts, list):
        raise RecordError(f"{r.input}: not a decision record: 'attempts' must be a list, "
                          f"got {_type_name(r.attempts)}")
    for i, a in enumerate(r.attempts):
        if not isinstance(a, dict) or not isinstance(a.get("stage"), str):
            raise RecordError(f"{r.input}: not a decision record: attempt {i} must be an object with a 'stage'")
        if not isinstance(a.get("reasons", []), list):
            raise RecordError(f"{r.input}: not a decision record: attempt {i} 'reasons' must be a list")
    if r.worst_windows is not None:
        r.worst_windows = _boxes(r.worst_windows, "worst_windows", r.input)
    if not isinstance(r.extra, dict):
        raise RecordError(f"{r.input}: not a decision record: 'extra' must be a dict")
