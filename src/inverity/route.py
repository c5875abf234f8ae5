"""Routing: (Profile, Policy) → an ordered list of candidate stages, each with a reason a person can read.

``plan`` is a pure function of its arguments (the stage capabilities and the learned-model facts can be passed
in; by default they come from the stage registry and the model zoo). Preference is data (STYLE.md 6): the
order of stages per content kind is the policy's own ``preferences`` table (a built-in's is in its TOML file,
``inverity/policies/builtin/``); the code only filters it by what the policy and the image allow, and says why
each stage was kept or skipped. No behaviour here depends on a policy's name.

How the pipeline uses a plan
----------------------------
Candidates are tried in order; each has ``floors`` to verify against and ``search`` (pick the quality per image
that meets the floors at the fewest bytes). Candidates that share a ``group`` are *equivalent choices*: a
pipeline may try all of them and keep the smallest that passes (a lossless PNG vs WebP-lossless vs a
near-lossless JPEG-LS for a screenshot); a later group is only a fallback for when nothing in the earlier
groups passes. A pipeline that simply takes the first passing candidate is still correct — the order within
a group is the expected-best first.

Stages that were considered but not allowed are not candidates; :func:`make_plan` keeps them with the reason
(``Plan.skipped``) and :func:`explain` prints both, e.g.::

    policy controlled
    1. learned q=search [group 0]: natural photo, in distribution (ood 3.1 <= 7.4), decode ≈ 1.8 s on cpu ...
    2. avif q=search [group 0]: lossy, quality searched to meet the floors at fewest bytes (controlled ...)
    3. webp q=search [group 1]: ...
    skipped jxl-jpeg: transcodes jpeg inputs only; this input is png

Preferences
-----------
A policy's ``preferences`` maps a content kind to groups of stages (``"*"``: every kind not named); a user
policy that ``extends`` a built-in inherits its table and may replace the groups of any kind. A policy with an
explicit ``stages`` list uses that list, in that order (one stage per group), instead. Which stages are
refused is data too: ``lossless_only`` (bit-exact only), ``bounded_only`` (lossless or near-lossless),
``allow_learned``, ``standard_only``, ``accept``, ``metadata``.

Examples
--------
>>> from inverity.analyse import Profile
>>> from inverity.policy import get_policy
>>> [c.codec_id for c in plan(Profile("photo", 0.9, width=64, height=64, channels=3), get_policy("delivery"))]
['avif', 'webp', 'jpeg', 'png']

(``jxl`` is in delivery's table but not in its default ``accept``: browsers do not decode JPEG XL.)

Archive never makes an asset bigger: its single group also holds ``original`` (the input file kept as is) and,
for JPEG inputs, ``jxl-jpeg`` (lossless JPEG → JPEG XL transcoding, the JPEG restorable byte for byte), so
the smallest bit-exact choice wins and a re-encode larger than the original never does.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from .analyse import Profile
from .image import Image
from .formats import dicom_transfer_syntaxes
from .errors import PolicyError
from ._preferences import Group, parse_entry
from .policy import CODEC_FORMAT, Policy, client_format, get_policy
from .verify import Floors
from .verify_checks import check_names

__all__ = ["Candidate", "Skipped", "Plan", "Resolution", "AUTO_BY_FLAG", "AUTO_BY_KIND",
           "DICOM_TRANSFER_SYNTAX_STAGES", "LINE_ART_KINDS", "resolve_policy", "make_plan", "plan", "explain"]

#: content kinds whose delivery goes lossless / near-lossless first
LINE_ART_KINDS = ("drawing", "screen", "synthetic")

#: lossy candidates for these kinds are held to stricter floors (text and thin lines show ringing first)
KIND_FLOOR_OVERRIDES: dict[str, dict[str, float]] = {
    "drawing": {"ssimulacra2": 80.0}, "screen": {"ssimulacra2": 80.0}, "synthetic": {"ssimulacra2": 80.0},
}

#: ``auto``: a flag decides first (in this order), then the kind
AUTO_BY_FLAG: tuple[tuple[str, str, str], ...] = (
    ("dicom", "diagnostic", "DICOM dataset: keep it, lossless transfer syntax"),
    ("high_bit_depth", "diagnostic", "16-bit samples: medical/scientific data, kept lossless"),
)
AUTO_BY_KIND: dict[str, tuple[str, str]] = {
    "medical": ("diagnostic", "medical/scientific content: lossless"),
    "drawing": ("delivery", "line art: lossless or near-lossless first"),
    "screen": ("delivery", "screen content: lossless or near-lossless first"),
    "synthetic": ("delivery", "synthetic graphics: lossless or near-lossless first"),
    "photo": ("delivery", "natural photo: standard lossy formats at a perceptual floor"),
    "aerial": ("delivery", "aerial photo: standard lossy formats at a perceptual floor"),
    "texture": ("delivery", "texture: standard lossy formats at a perceptual floor"),
}

#: stages whose bitstream is a DICOM transfer syntax: they can keep a DICOM dataset (the pipeline re-wraps);
#: a view of the format registry (``Format.dicom_transfer_syntax`` of each stage's format)
DICOM_TRANSFER_SYNTAX_STAGES = tuple(dicom_transfer_syntaxes())
_DEFAULT_MODEL = "hp-gain"


@dataclass(frozen=True)
class Candidate:
    """One stage to try.

    ``quality`` is fixed when ``search`` is false (``None`` for lossless stages); with ``search`` the pipeline
    picks the quality per image that meets ``floors`` at the fewest bytes (``quality`` is then a start hint or
    ``None``). ``group``: see the module docstring.
    """

    codec_id: str
    quality: int | None = None
    search: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    floors: Floors = field(default_factory=Floors)
    group: int = 0

    def label(self) -> str:
        opts = "".join(f"?{k}={v}" for k, v in self.options.items() if k != "model")
        return f"{self.codec_id}{opts}"

    def to_dict(self) -> dict[str, Any]:
        return {"codec_id": self.codec_id, "quality": self.quality, "search": self.search,
                "options": dict(self.options), "reason": self.reason, "group": self.group,
                "floors": {k: v for k, v in self.floors.to_dict().items()}}


@dataclass(frozen=True)
class Skipped:
    """A stage the table proposed that this policy/image does not allow, and why."""

    codec_id: str
    reason: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"codec_id": self.codec_id, "options": dict(self.options), "reason": self.reason}


@dataclass
class Plan:
    """The router's full answer: the concrete policy, the candidates in order, and what was skipped."""

    policy: Policy
    requested: str
    candidates: list[Candidate]
    skipped: list[Skipped]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.name, "requested": self.requested, "notes": list(self.notes),
                "candidates": [c.to_dict() for c in self.candidates], "skipped": [s.to_dict() for s in self.skipped]}

    def explain(self) -> list[str]:
        lines = [f"policy {self.policy.name}" + (f" (requested {self.requested})"
                                                   if self.requested != self.policy.name else "")]
        lines += [f"note: {n}" for n in self.notes]
        for i, c in enumerate(self.candidates, 1):
            q = "search" if c.search else ("-" if c.quality is None else str(c.quality))
            lines.append(f"{i}. {c.label()} q={q} [group {c.group}]: {c.reason}")
        if not self.candidates:
            lines.append("no candidate: this policy allows no stage for this image")
        lines += [f"skipped {s.codec_id}{''.join(f'?{k}={v}' for k, v in s.options.items())}: {s.reason}"
                  for s in self.skipped]
        return lines


class Resolution(NamedTuple):
    """What ``auto`` chose: a concrete policy and why (a tuple, so ``policy, reason = resolve_policy(...)``)."""

    policy: Policy
    reason: str


# ----------------------------------------------------------------------------------------------------------
def resolve_policy(profile: Profile, policy: Policy | str = "auto", image: Image | None = None) -> Resolution:
    """The concrete policy for this asset: ``auto`` picks by flags then kind; any other policy is itself.

    ``auto`` never resolves to ``controlled`` — the learned stage is always the user's explicit choice.

    Examples
    --------
    >>> from inverity.analyse import Profile
    >>> resolve_policy(Profile("drawing", 0.9)).policy.name
    'delivery'
    >>> r = resolve_policy(Profile("photo", 0.9, flags=["dicom"]))
    >>> r.policy.name, r.reason
    ('diagnostic', 'DICOM dataset: keep it, lossless transfer syntax')
    """
    pol = get_policy(policy)
    if pol.name != "auto":
        return Resolution(pol, f"policy {pol.name} requested")
    flags = set(profile.flags)
    if image is not None:
        if "dicom" in image.metadata:
            flags.add("dicom")
        if image.pixels.dtype.itemsize == 2:
            flags.add("high_bit_depth")
    for flag, name, why in AUTO_BY_FLAG:
        if flag in flags:
            return Resolution(get_policy(name), why)
    name, why = AUTO_BY_KIND.get(profile.kind, ("delivery", f"kind {profile.kind}"))
    conf = f" (p={profile.kind_confidence:.2f})" if profile.kind_source == "classifier" else ""
    return Resolution(get_policy(name), why + conf)


# ----------------------------------------------------------------------------------------------------------
def _registry_caps() -> dict[str, Any]:
    try:
        from .stages.base import list_stages

        return {cid: cls.capabilities for cid, cls in list_stages().items() if cls.available()}
    except Exception:  # noqa: BLE001 - no registry: every stage is reported as not installed
        return {}


def _zoo_models() -> tuple[dict[str, Any], str]:
    try:
        from .stages.learned import zoo

        return {m.name: m for m in zoo.list_models()}, str(zoo.default_model())
    except Exception:  # noqa: BLE001 - zoo absent or registry unreadable: no learned model
        return {}, _DEFAULT_MODEL


def _gpu_rate(info: Any) -> float | None:
    for key in ("decode_ms_per_mp_gpu",):
        v = getattr(info, key, None) if not isinstance(info, Mapping) else info.get(key)
        if v:
            return float(v)
    prov = (info.get("provenance") if isinstance(info, Mapping) else getattr(info, "provenance", None)) or {}
    v = ((prov.get("timing") or {}).get("gpu") or {}).get("decode_ms_per_mp") if isinstance(prov, Mapping) else None
    return float(v) if v else None


def _cpu_rate(info: Any) -> float | None:
    v = info.get("decode_ms_per_mp") if isinstance(info, Mapping) else getattr(info, "decode_ms_per_mp", None)
    return float(v) if v else None


def _learned_check(profile: Profile, policy: Policy, models: Mapping[str, Any], default_model: str,
                   mp: float, named: str | None = None) -> tuple[str | None, str, str]:
    """(refusal or None, reason when allowed, model name) for the learned stage; ``named``: the model the
    preference entry names (``learned?model=NAME``), which wins over the policy's ``model``."""
    name = str(named) if named else (policy.model or default_model)
    if profile.kind_source == "fallback":
        return "content kind unknown (no kind classifier installed): the learned stage needs a known photo", "", name
    if profile.kind != "photo":
        return (f"content is {profile.kind}, not a natural photo (the learned codec is trained on photos only)",
                "", name)
    gate = getattr(profile, "learned_gate", None)
    if callable(gate):   # the model's own evidence (analyse.py, gate v2): computed here only, once per profile
        gate()
    if profile.in_distribution is None:
        return (f"no OOD statistics for model {profile.ood_model or name!r}: whether this photo is in distribution "
                "is unknown, and unknown is not in", "", name)
    if not profile.in_distribution:
        drivers = ", ".join(f"{d['feature']} z={d['z']:+.1f}" for d in profile.drivers[:3])
        return (f"out of distribution: ood score {profile.ood_score:.1f} > threshold {profile.ood_threshold:.1f}"
                + (f" (drivers: {drivers})" if drivers else ""), "", name)
    if name not in models:
        return (f"learned model {name!r} is missing (installed: {', '.join(sorted(models)) or 'none'})", "", name)
    info = models[name]
    budget = policy.decode_budget_ms_per_mp
    rate, note = _cpu_rate(info), ""
    if policy.hardware == "gpu":
        g = _gpu_rate(info)
        if g is not None:
            rate = g
        else:
            note = " (no GPU timing recorded: using the CPU figure, conservative)"
    if budget is not None:
        if rate is None:
            return f"model {name!r} has no recorded decode time, so the decode budget cannot be checked", "", name
        if rate > budget:
            return (f"decode budget too small: model {name!r} decodes at {rate:.0f} ms/MP on {policy.hardware}"
                    f"{note}, ≈ {rate * mp:.0f} ms for this {mp:.2f} MP image > budget {budget:.0f} ms/MP "
                    f"({budget * mp:.0f} ms)", "", name)
        cost = f"decode ≈ {rate * mp:.0f} ms on {policy.hardware}{note} within budget {budget * mp:.0f} ms"
    else:
        cost = "no decode budget set"
    ood = f"ood {profile.ood_score:.1f} <= {profile.ood_threshold:.1f}" if profile.ood_score is not None else ""
    return None, f"natural photo, in distribution ({ood}), model {name!r}, {cost}; {_verified_with(policy)}", name


#: the floors that make up "the structure checks" (DESIGN.md: controlled verifies the learned stage with them)
_STRUCTURE_CHECKS = check_names(structure=True)


def _verified_with(policy: Policy) -> str:
    """What the learned candidate is verified against, said as it is (a policy may have removed checks)."""
    checked = policy.floors.checked()
    structure = [c for c in _STRUCTURE_CHECKS if c in checked]
    if len(structure) == len(_STRUCTURE_CHECKS):
        return "verified with structure checks"
    missing = [c for c in _STRUCTURE_CHECKS if c not in checked]
    return (f"verified against {', '.join(checked) or 'no floor'} — structure checks {', '.join(missing)} "
            f"not applied (policy {policy.name})")


def make_plan(profile: Profile, policy: Policy | str, image: Image | None = None, *,
              stages: Mapping[str, Any] | None = None, models: Mapping[str, Any] | None = None,
              default_model: str | None = None) -> Plan:
    """The full routing answer: candidates in order plus the skipped stages with reasons.

    Parameters
    ----------
    profile
        From :func:`inverity.analyse.analyse`.
    policy
        A :class:`~inverity.policy.Policy` or a name/TOML path; ``auto`` is resolved first.
    image
        Optional: when given, its channels, bit depth and metadata keys override the profile's.
    stages
        ``codec_id -> Capabilities`` (default: the stage registry, available stages only).
    models
        ``name -> model info`` with ``decode_ms_per_mp`` (default: the learned-model zoo).
    default_model
        The learned model used when the policy names none (default: the zoo's default).
    """
    requested = get_policy(policy)
    resolved, why = resolve_policy(profile, requested, image)
    notes = [f"auto -> {resolved.name}: {why}"] if requested.name == "auto" else []
    caps = _registry_caps() if stages is None else dict(stages)
    if models is None:
        models, zoo_default = _zoo_models()
        default_model = default_model or zoo_default
    default_model = default_model or _DEFAULT_MODEL

    channels = image.channels if image is not None else profile.channels
    width = 8 * image.pixels.dtype.itemsize if image is not None else (16 if profile.bit_depth > 8 else 8)
    src_format = getattr(image, "source_format", None) if image is not None else None
    alpha = image.has_alpha if image is not None else ("alpha" in profile.flags or channels in (2, 4))
    meta = sorted(k for k, v in image.metadata.items() if v) if image is not None else list(profile.metadata_keys)
    if "dicom" in profile.flags and "dicom" not in meta:
        meta.append("dicom")
    mp = (image.width * image.height / 1e6) if image is not None else profile.megapixels

    if resolved.stages is not None:
        groups: tuple[Group, ...] = tuple((s,) for s in resolved.stages)
        source = f"policy {resolved.name}'s stage list"
    elif resolved.preferences is not None:
        groups = resolved.preferences.for_kind(profile.kind)
        source = f"{resolved.name} table for {profile.kind}"
    else:
        raise PolicyError(f"policy {resolved.name} has no stage preferences: give it extends = \"<built-in>\", a "
                          "stages list or a [preferences] table")

    def select(icc_guard: str | None) -> tuple[list[Candidate], list[Skipped]]:
        candidates: list[Candidate] = []
        skipped: list[Skipped] = []
        seen: set[tuple[str, tuple[tuple[str, Any], ...]]] = set()
        out_group = -1
        for group in groups:
            kept_in_group = False
            for entry in group:
                cid, opts = parse_entry(entry)
                cap = caps.get(cid)
                if cap is not None and getattr(cap, "near_lossless", False) and resolved.max_abs_error:
                    opts = {**opts, "near": int(resolved.max_abs_error)}        # the policy's bound wins
                near = int(opts.get("near", 0) or 0)
                key = (cid, tuple(sorted(opts.items())))
                if key in seen:
                    continue
                seen.add(key)
                refusal = _refuse(cid, cap, near, resolved, width, channels, alpha, meta, src_format)
                if refusal is None and icc_guard and "icc" not in getattr(cap, "metadata", ()):
                    refusal = (f"{cid} cannot carry the ICC profile {icc_guard!r}, which is not sRGB: its colours "
                               "would be shown as sRGB (mislabelled)")
                learned_why, model_name = "", None
                if refusal is None and getattr(cap, "learned", False):
                    refusal, learned_why, model_name = _learned_check(profile, resolved, models, default_model, mp,
                                                                      opts.get("model"))
                if refusal is not None:
                    skipped.append(Skipped(cid, refusal, opts))
                    continue
                if not kept_in_group:
                    out_group += 1
                    kept_in_group = True
                candidates.append(_candidate(cid, cap, opts, near, resolved, profile.kind, out_group, source,
                                             learned_why, model_name))
        return candidates, skipped

    # a wide-gamut (non-sRGB) ICC profile is kept where any allowed stage can carry it, never mislabelled
    # silently; only when none can is it dropped (the pipeline then records it loudly; ``keep`` refuses)
    wide = _non_srgb_icc(image) if image is not None and "icc" in meta and not resolved.keep_metadata else None
    candidates, skipped = select(wide)
    if wide and not candidates:
        candidates, skipped = select(None)
        notes.append(f"no allowed stage can carry the non-sRGB ICC profile {wide!r}: it is dropped")
    return Plan(resolved, requested.name, candidates, skipped, notes)


def _non_srgb_icc(image: Image) -> str | None:
    """The description of the image's ICC profile when it is not sRGB, else None."""
    from ._promises import icc_description

    icc = image.metadata.get("icc")
    if not icc:
        return None
    desc = icc_description(icc)
    return None if "srgb" in desc.lower() else desc


def _refuse(cid: str, cap: Any, near: int, policy: Policy, width: int, channels: int, alpha: bool,
            meta: list[str], source: str | None = None) -> str | None:
    """Why ``cid`` may not be used here, or None."""
    if cap is None:
        return "stage not installed (not in the stage registry)"
    sources = tuple(getattr(cap, "sources", ()) or ())
    if sources and source not in sources:
        return f"transcodes {'/'.join(sources)} inputs only; this input is {source or 'of unknown format'}"
    if client_format(cid, source) is None and cid in CODEC_FORMAT:
        return f"{cid} writes the input's own format, which is unknown here (no image given)"
    if policy.accept is not None and client_format(cid, source) not in policy.accept:
        return f"clients accept only {', '.join(policy.accept)}; {cid} writes {client_format(cid, source) or '?'}"
    if getattr(cap, "learned", False) and not policy.allow_learned:
        return f"policy {policy.name} never uses the learned stage"
    if policy.standard_only and not getattr(cap, "standard", True):
        return f"policy {policy.name} allows standardised formats only"
    if policy.lossless_only and (not cap.lossless or near):
        return f"policy {policy.name} is lossless only and {cid}{f' near={near}' if near else ''} is lossy"
    if policy.bounded_only and not cap.lossless:
        return f"policy {policy.name} allows lossless or bounded-error stages only; {cid} is lossy"
    if width not in cap.bit_depths:
        return (f"{cid} takes {'/'.join(map(str, cap.bit_depths))}-bit samples; this image is {width}-bit "
                "(never silently reduced)")
    if channels not in cap.channels:
        return f"{cid} takes {', '.join(map(str, cap.channels))} channels; this image has {channels}"
    if alpha and not cap.alpha:
        return f"{cid} cannot store the alpha channel"
    if policy.keep_metadata and meta:
        carried = set(cap.metadata) | ({"dicom"} if cid in DICOM_TRANSFER_SYNTAX_STAGES else set())
        lost = [k for k in meta if k not in carried]
        if lost:
            keeps = [k for k in meta if k in carried]
            return (f"policy {policy.name} keeps metadata and {cid} would drop {', '.join(lost)}"
                    + (f" (it keeps {', '.join(keeps)})" if keeps else ""))
    return None


def _candidate(cid: str, cap: Any, opts: dict[str, Any], near: int, policy: Policy, kind: str, group: int,
               source: str, learned_why: str, model_name: str | None) -> Candidate:
    if getattr(cap, "learned", False):
        return Candidate(cid, None, True, {**opts, "model": model_name}, learned_why, policy.floors, group)
    if cap.lossless and near:
        floors = dataclasses.replace(policy.floors, lossless=False, max_abs_error=float(near))
        return Candidate(cid, None, False, opts,
                         f"near-lossless: every sample within {near} ({source})", floors, group)
    if cap.lossless:
        return Candidate(cid, None, False, opts, f"lossless, verified bit-exact ({source})", Floors.lossless_only(),
                         group)
    floors = policy.floors
    over = KIND_FLOOR_OVERRIDES.get(kind, {})
    tighter: dict[str, Any] = {k: v for k, v in over.items() if getattr(floors, k) is None or getattr(floors, k) < v}
    if tighter:
        floors = dataclasses.replace(floors, **tighter)
    extra = f"; {kind} floors " + ", ".join(f"{k} >= {v:g}" for k, v in tighter.items()) if tighter else ""
    return Candidate(cid, None, True, opts,
                     f"lossy, quality searched to meet the floors at fewest bytes ({source}{extra})", floors, group)


def plan(profile: Profile, policy: Policy | str, image: Image | None = None, **kwargs: Any) -> list[Candidate]:
    """The candidates to try, in order (see :func:`make_plan` for the parameters and the skipped stages)."""
    return make_plan(profile, policy, image, **kwargs).candidates


def explain(profile: Profile, policy: Policy | str, image: Image | None = None, **kwargs: Any) -> list[str]:
    """Human-readable lines: the concrete policy, each candidate with its reason, each skipped stage and why."""
    return make_plan(profile, policy, image, **kwargs).explain()
