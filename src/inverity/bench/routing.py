"""How good is the router? Each image's routed choice against an exhaustive oracle under the same policy.

For every image the **oracle** tries every stage the policy allows (:func:`oracle_candidates`: for any content
kind, not only the one the analyser saw), each over a quality grid (lossless stages once; the learned stage at
each of its qualities), verifies every reconstruction with
:func:`inverity.verify.verify` against the floors the router would apply to that stage, and keeps the passing
(stage, quality) with the fewest bytes. The **router** is the real pipeline, :func:`inverity.pipeline.compress_one`
(profile → policy → plan → encode/verify/search). Per image we report:

- **regret** = router bytes / oracle bytes (1.0 = the router found the cheapest passing choice; below 1 is
  possible because the router's quality search is finer than the oracle's grid);
- **floor violations**: the router's written output, decoded again and re-verified here, fails the floors
  (should never happen: the pipeline verifies before writing — this checks that claim end to end);
- **router failures**: the router wrote nothing though the oracle found a passing choice (or neither did);
- for policies that allow the learned stage: whether it **won** (its best passing size beats the best classical
  one), and whether the router **used it where it lost** or **skipped it where it won**.

The oracle's grid scan goes up in quality and stops at a stage's first passing quality (passing is monotone in
quality and size grows with it, as for the pipeline's own search), then bisects the last grid gap to single
quality steps; ``exhaustive=True`` tries the whole grid.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .._atomic import atomic_write_text
from ..errors import InputError, InverityError
from ..record import DecisionRecord
from ..search import search_grid
from . import _data

__all__ = ["OracleChoice", "oracle", "oracle_candidates", "run_routing", "DEFAULT_GRID"]

#: the oracle's quality grid for 0–100 stages
DEFAULT_GRID: tuple[int, ...] = tuple(range(5, 101, 5))

Progress = Callable[[int, int, str], None]


@dataclass
class OracleChoice:
    """The oracle's verdict for one image: the cheapest passing choice overall, per stage, and what was tried."""

    stage: str | None
    quality: int | None
    bytes: int | None
    options: dict[str, Any] = field(default_factory=dict)
    best_per_stage: dict[str, dict[str, Any]] = field(default_factory=dict)
    tried: int = 0


def _toolkit() -> Any:
    from ..pipeline import Toolkit

    return Toolkit.default()


def _policy_name(p: Any) -> str:
    return str(getattr(p, "name", p))


def _key(codec_id: str, options: Mapping[str, Any] | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    return codec_id, tuple(sorted((str(k), str(v)) for k, v in (options or {}).items() if k != "model"))


@dataclass(frozen=True)
class _Try:
    """One (stage, options) the oracle tries, with the floors its reconstructions must meet."""

    codec_id: str
    floors: Any
    options: dict[str, Any] = field(default_factory=dict)


def oracle_candidates(profile: Any, policy: Any, image: Any, plan: Sequence[Any]) -> list[_Try]:
    """Everything ``policy`` allows for this image, not only what the router planned for its kind.

    The router picks a preference table by the image's *estimated* kind; the oracle takes the union of the
    plans for every kind of the policy's preference table (so a drawing misread as a photo still has its lossless
    options measured), each verified against the floors the router applies to *this* image (its plan's lossy
    floors for lossy stages; bit-exact for lossless; the bound for near-lossless). When the policy allows the
    learned stage but the router's gate skipped it (out of distribution, decode budget), the oracle tries it
    anyway under the policy's floors, so "skipped where it would have won" can be counted.
    """
    out: list[_Try] = []
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    def add(cid: str, floors: Any, options: Mapping[str, Any] | None) -> None:
        k = _key(cid, options)
        if k not in seen:
            seen.add(k)
            out.append(_Try(cid, floors, dict(options or {})))

    for c in plan:
        add(c.codec_id, getattr(c, "floors", None), getattr(c, "options", None))
    explicit = getattr(policy, "stages", None)
    pol_floors = getattr(policy, "floors", None)
    lossy_floors = next((c.floors for c in plan if getattr(c, "search", False) and c.codec_id != "learned"),
                        pol_floors)
    if explicit:
        for sid in explicit:
            add(str(sid), pol_floors, None)
    else:
        try:
            import dataclasses

            from ..route import make_plan

            # every kind the policy's table names, plus one it does not (its "*" groups)
            kinds = [k for k in (getattr(policy, "preferences", None) or {}) if k != "*"] + ["texture"]
            for kind in kinds:
                other = make_plan(dataclasses.replace(profile, kind=kind), policy, image)
                for c in other.candidates:
                    lossy = getattr(c, "search", False) and c.codec_id != "learned"
                    add(c.codec_id, lossy_floors if lossy else c.floors, c.options)
        except (ImportError, AttributeError, TypeError):   # an older route module: the plan is the set
            pass
    if getattr(policy, "allow_learned", False) and not any(t.codec_id == "learned" for t in out):
        try:
            from ..stages.base import stage_class

            stage_class("learned")
            add("learned", pol_floors, None)
        except InverityError:
            pass
    return out


def _grid_for(codec_id: str, grid: Sequence[int], options: Mapping[str, Any] | None = None) -> list[int | None]:
    """The qualities the oracle tries for a stage: none for lossless, the model's for learned, else ``grid``."""
    from ..stages.base import stage_class

    cls = stage_class(codec_id)
    caps = getattr(cls, "capabilities", None)
    if caps is not None and caps.lossless:
        return [None]
    if caps is not None and caps.learned:
        from ..stages.learned import zoo

        return [int(q) for q in zoo.model_info((options or {}).get("model")).qualities]
    return [int(q) for q in grid]


def oracle(image: Any, policy: Any, plan: Sequence[Any], *, grid: Sequence[int] = DEFAULT_GRID,
           exhaustive: bool = False, refine: bool = True, toolkit: Any = None) -> OracleChoice:
    """The cheapest (stage, quality) that passes verification among ``plan``'s candidates and the policy's own
    ``stages`` list (each needs ``codec_id`` and may carry ``floors`` and ``options``; a stage without floors
    is verified against ``policy.floors``). :func:`oracle_candidates` builds the full set for an image.

    Per stage the grid is scanned upwards to the first passing quality (``exhaustive``: the whole grid); with
    ``refine`` the gap between the last failing and the first passing grid point is then bisected to single
    quality steps, so the oracle is as fine as the router's own search.
    """
    tk = toolkit or _toolkit()
    pol_floors = getattr(policy, "floors", None)
    tries: list[_Try] = []
    seen = set()
    for c in list(plan) + [_Try(str(s), None) for s in (getattr(policy, "stages", None) or ())]:
        k = _key(c.codec_id, getattr(c, "options", None))
        if k not in seen:
            seen.add(k)
            tries.append(_Try(c.codec_id, getattr(c, "floors", None) or pol_floors,
                              dict(getattr(c, "options", None) or {})))
    if getattr(policy, "allow_learned", True) is False:
        tries = [t for t in tries if t.codec_id != "learned"]
    result = OracleChoice(None, None, None)
    for t in tries:
        label = t.codec_id + "".join(f"?{k}={v}" for k, v in sorted(t.options.items()) if k != "model")
        try:
            qualities = _grid_for(t.codec_id, grid, t.options)
        except InverityError:
            continue
        probes: list[dict[str, Any]] = []
        found = search_grid(tk, image, t, probes, qualities, exhaustive=exhaustive,
                            refine=refine and t.codec_id != "learned")
        result.tried += len(probes)
        best: dict[str, Any] | None = None
        if found is not None:
            best = {"stage": t.codec_id, "quality": found.entry["quality"], "bytes": len(found.payload or b""),
                    "options": t.options}
        if best is not None:
            prev = result.best_per_stage.get(t.codec_id)
            if prev is None or best["bytes"] < prev["bytes"]:
                result.best_per_stage[t.codec_id] = best
            result.best_per_stage.setdefault(label, best)
            if result.bytes is None or best["bytes"] < result.bytes:
                result.stage, result.quality, result.bytes = t.codec_id, best["quality"], best["bytes"]
                result.options = dict(best["options"])
    return result


def _reverify(tk: Any, image: Any, record: DecisionRecord, floors: Any) -> tuple[bool | None, str]:
    """Decode the router's written output independently and verify it; (passed, reason)."""
    out = record.output
    if not out or not Path(out).exists():
        return None, "no output file"
    data = Path(out).read_bytes()
    try:
        if str(out).endswith(".dcm"):
            rec = tk.load(data, name=str(out))
        else:
            stage = tk.get_stage(record.stage, quality=record.quality, **dict(record.options or {}))
            rec = stage.decode(data)
    except Exception as exc:  # noqa: BLE001 - an output we cannot decode is a violation, with its reason
        return False, f"cannot decode output: {type(exc).__name__}: {exc}"
    v = tk.verify(image, rec, floors)
    return bool(v.passed), "; ".join(str(r) for r in v.reasons)[:300]


def run_routing(data: str | os.PathLike[str], policy: str, out: str | os.PathLike[str], *,
                limit: int | None = None, grid: Sequence[int] = DEFAULT_GRID, exhaustive: bool = False,
                progress: Progress | None = None) -> dict[str, Any]:
    """Router against oracle on every image under ``data``; writes ``routing.csv/.json/.md`` to ``out``."""
    tk = _toolkit()
    from ..pipeline import compress_one

    root, out_p = Path(data), Path(out)
    files = _data.list_images(root, limit)
    if not files:
        raise InputError(f"{root}: no images found")
    pol = tk.get_policy(policy)
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="inverity-routing-") as tmp:
        for i, f in enumerate(files):
            key = _data.image_key(f, root)
            row: dict[str, Any] = {"image": key}
            image = tk.load(f.read_bytes(), name=str(f))
            profile = tk.analyse(image)
            concrete = pol
            if _policy_name(pol) == "auto":
                resolved = tk.resolve_policy(profile, pol, image)
                if isinstance(resolved, tuple):
                    resolved = resolved[0]
                concrete = tk.get_policy(resolved) if isinstance(resolved, str) else resolved
            row["kind"] = getattr(profile, "kind", None)
            row["policy"] = _policy_name(concrete)
            plan = list(tk.plan(profile, concrete))
            tries = oracle_candidates(profile, concrete, image, plan)
            # router
            t0 = time.perf_counter()
            try:
                res = compress_one(f, pol, outdir=tmp, root=root)
                rec = DecisionRecord.from_dict(res.record)
                row.update(router_stage=rec.stage, router_quality=rec.quality, router_bytes=rec.bytes,
                           router_attempts=len(rec.attempts))
                cand = next((c for c in plan if c.codec_id == rec.stage), None)
                floors = getattr(cand, "floors", None) or getattr(concrete, "floors", None)
                ok, why = _reverify(tk, image, rec, floors)
                row["router_reverified"] = ok
                row["violation"] = ok is False
                if ok is False:
                    row["violation_reason"] = why
            except InverityError as exc:
                row.update(router_stage=None, router_quality=None, router_bytes=None, router_reverified=None,
                           violation=False, router_error=str(exc).splitlines()[0])
            row["router_s"] = time.perf_counter() - t0
            # oracle
            t0 = time.perf_counter()
            orc = oracle(image, concrete, tries, grid=grid, exhaustive=exhaustive, toolkit=tk)
            row.update(oracle_stage=orc.stage, oracle_quality=orc.quality, oracle_bytes=orc.bytes,
                       oracle_tries=orc.tried, oracle_s=time.perf_counter() - t0)
            row["regret"] = (row["router_bytes"] / orc.bytes) if (row.get("router_bytes") and orc.bytes) else None
            row["router_failed"] = row.get("router_bytes") is None and orc.bytes is not None
            learned = orc.best_per_stage.get("learned")
            classical = [v for v in orc.best_per_stage.values() if v["stage"] != "learned"]
            best_cl = min(classical, key=lambda v: v["bytes"]) if classical else None
            row["learned_bytes"] = learned["bytes"] if learned else None
            row["best_other_bytes"] = best_cl["bytes"] if best_cl else None
            row["learned_won"] = bool(learned and (best_cl is None or learned["bytes"] < best_cl["bytes"]))
            used = row.get("router_stage") == "learned"
            row["learned_used_lost"] = used and not row["learned_won"]
            row["learned_skipped_won"] = (not used) and row["learned_won"]
            rows.append(row)
            if progress:
                progress(i + 1, len(files), key)
    summary = _summarise(rows, policy, time.perf_counter() - t_all, grid, exhaustive)
    _write(out_p, rows, summary)
    return {"summary": summary, "rows": rows}


def _summarise(rows: Sequence[Mapping[str, Any]], policy: str, seconds: float, grid: Sequence[int],
               exhaustive: bool) -> dict[str, Any]:
    regrets = [r["regret"] for r in rows if r.get("regret")]
    s: dict[str, Any] = {
        "policy": policy, "images": len(rows), "grid": list(grid), "exhaustive": exhaustive,
        "seconds": round(seconds, 1),
        "router_failures": sum(1 for r in rows if r.get("router_failed")),
        "both_failed": sum(1 for r in rows if r.get("router_bytes") is None and r.get("oracle_bytes") is None),
        "violations": sum(1 for r in rows if r.get("violation")),
        "same_stage": sum(1 for r in rows if r.get("router_stage") and r.get("router_stage") == r.get("oracle_stage")),
        "learned_won": sum(1 for r in rows if r.get("learned_won")),
        "learned_used": sum(1 for r in rows if r.get("router_stage") == "learned"),
        "learned_used_lost": sum(1 for r in rows if r.get("learned_used_lost")),
        "learned_skipped_won": sum(1 for r in rows if r.get("learned_skipped_won")),
        "policies": dict(sorted({p: sum(1 for r in rows if r.get("policy") == p)
                                 for p in {r.get("policy") for r in rows}}.items())),
    }
    if regrets:
        s.update(regret_geomean=math.exp(statistics.fmean(math.log(x) for x in regrets)),
                 regret_median=statistics.median(regrets), regret_max=max(regrets), regret_min=min(regrets),
                 regret_over_10pct=sum(1 for x in regrets if x > 1.10),
                 total_bytes_router=sum(r["router_bytes"] for r in rows if r.get("regret")),
                 total_bytes_oracle=sum(r["oracle_bytes"] for r in rows if r.get("regret")))
    return s


def _write(out: Path, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> None:
    from ._tables import fmt as _fmt, json_safe as _json_safe, md_table, to_csv as _csv

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "routing.csv", _csv(list(rows)))
    atomic_write_text(out / "routing.json", json.dumps(_json_safe({"summary": summary, "rows": list(rows)}),
                                                       indent=1))
    s = summary
    L = [f"# Routing: policy `{s['policy']}` against the oracle", "",
         f"{s['images']} images; oracle grid {s['grid'][0]}..{s['grid'][-1]} step "
         f"{(s['grid'][1] - s['grid'][0]) if len(s['grid']) > 1 else '-'} "
         f"({'exhaustive' if s['exhaustive'] else 'first passing quality per stage'}, the last gap bisected to "
         f"single steps); {s['seconds']} s.", ""]
    L.append(md_table(["measure", "value"], [
        ["regret, geometric mean (router bytes / oracle bytes)", _fmt(s.get("regret_geomean"), 3)],
        ["regret, median / min / max", f"{_fmt(s.get('regret_median'), 3)} / {_fmt(s.get('regret_min'), 3)} / "
                                        f"{_fmt(s.get('regret_max'), 3)}"],
        ["images with regret > 1.10", s.get("regret_over_10pct", "n/a")],
        ["total bytes router / oracle", f"{s.get('total_bytes_router', 'n/a')} / {s.get('total_bytes_oracle', 'n/a')}"],
        ["router chose the oracle's stage", f"{s['same_stage']} / {s['images']}"],
        ["floor violations (output re-decoded and re-verified)", s["violations"]],
        ["router failed where the oracle passed", s["router_failures"]],
        ["neither found a passing choice", s["both_failed"]],
        ["learned stage won (oracle)", s["learned_won"]],
        ["learned used / used where it lost / skipped where it won",
         f"{s['learned_used']} / {s['learned_used_lost']} / {s['learned_skipped_won']}"],
        ["concrete policies", ", ".join(f"{k}: {v}" for k, v in s["policies"].items())],
    ]))
    L += ["", "## Per image", ""]
    L.append(md_table(["image", "kind", "policy", "router", "bytes", "oracle", "bytes", "regret", "violation"], [
        [r["image"], r.get("kind") or "", r.get("policy") or "",
         f"{r.get('router_stage') or 'FAILED'} {'' if r.get('router_quality') is None else r['router_quality']}",
         r.get("router_bytes") or "", f"{r.get('oracle_stage') or 'none'} "
                                      f"{'' if r.get('oracle_quality') is None else r['oracle_quality']}",
         r.get("oracle_bytes") or "", _fmt(r.get("regret"), 3), "YES" if r.get("violation") else ""]
        for r in rows]))
    errs = [f"- {r['image']}: {r['router_error']}" for r in rows if r.get("router_error")]
    viol = [f"- {r['image']}: {r.get('violation_reason', '')}" for r in rows if r.get("violation")]
    if errs:
        L += ["", "## Router errors", ""] + errs
    if viol:
        L += ["", "## Violations", ""] + viol
    atomic_write_text(out / "routing.md", "\n".join(L) + "\n")
