"""CLI: ``inverity analyse INPUT [--json] [--policy P]`` — the content profile, and optionally the routing plan.

The profile is what the router sees: kind (from metadata or the classifier) with its confidence, the OOD
score against the learned model's training set with the threshold and the features that drove it, flags and
the analysis cost. With ``--policy`` the routing plan for that policy is shown too (candidates in order with
their reasons, and the stages skipped and why).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from . import app

__all__ = ["analyse_cmd", "profile_rows"]


def profile_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) rows of a profile dict for the table view.

    Examples
    --------
    >>> profile_rows({"kind": "photo", "kind_confidence": 0.9, "kind_source": "classifier"})[0]
    ('kind', 'photo (p=0.90, classifier)')
    """
    rows = [("kind", f"{d['kind']} (p={d.get('kind_confidence', 0):.2f}, {d.get('kind_source', '?')})")]
    probs = d.get("kind_probabilities") or {}
    if probs:
        top = sorted(probs.items(), key=lambda kv: -kv[1])[:3]
        rows.append(("kind probabilities", ", ".join(f"{k} {v:.2f}" for k, v in top)))
    if d.get("ood_score") is None:
        rows.append(("in distribution", f"unknown (no OOD statistics for model {d.get('ood_model')!r})"))
    else:
        verdict = "yes" if d.get("in_distribution") else "NO"
        rows.append(("in distribution", f"{verdict}: ood score {d['ood_score']:.2f} vs threshold "
                                        f"{d['ood_threshold']:.2f} (model {d.get('ood_model')}"
                                        + (f", gate {d['ood_gate']}" if d.get("ood_gate") else "") + ")"))
        drv = d.get("drivers") or []
        if drv:
            rows.append(("ood drivers", ", ".join(f"{x['feature']} z={x['z']:+.1f}" for x in drv)))
    if "width" in d:
        rows.append(("size", f"{d['width']}x{d['height']}, {d.get('channels')} channel(s), "
                             f"{d.get('bit_depth')}-bit"))
    rows.append(("flags", ", ".join(d.get("flags") or []) or "-"))
    if d.get("modality"):
        rows.append(("DICOM modality", str(d["modality"])))
    if d.get("metadata_keys"):
        rows.append(("metadata", ", ".join(d["metadata_keys"])))
    if "cost_ms" in d:
        rows.append(("analysis cost", f"{d['cost_ms']:.1f} ms"))
    return rows


def _check_model(name: str) -> None:
    """An unknown model name is an error (listing the installed ones), never a silent "unknown" verdict."""
    from ..stages.learned import zoo

    zoo.model_info(name)   # UnknownIdError: "unknown learned model 'x'; available: ..."


@app.command("analyse")
def analyse_cmd(
    input: Path = typer.Argument(..., help="Image to analyse (any format inverity reads, DICOM included)."),
    json_out: bool = typer.Option(False, "--json", help="Print the profile as JSON (with --policy: and the plan)."),
    policy: Optional[str] = typer.Option(None, "--policy", "-p",
                                         help="Also show the routing plan under this policy (name or TOML)."),
    model: Optional[str] = typer.Option(None, "--model", help="Learned model whose training set defines "
                                                               "'in distribution' (default: the zoo's)."),
    features: bool = typer.Option(False, "--features", help="Table view: list every feature value too."),
) -> None:
    """Profile an image: content kind, OOD score vs the learned model's training set, flags, cost."""
    from ..analyse import analyse
    from ..image import load

    if model is not None:
        _check_model(model)
    image = load(input)
    prof = analyse(image, model_name=model)
    plan = None
    if policy is not None:
        from ..route import make_plan

        plan = make_plan(prof, policy, image)
    d = prof.to_dict()             # after the plan: the router may have completed the OOD gate (model evidence)
    d["input"] = str(input)
    if json_out:
        if plan is not None:
            d["plan"] = plan.to_dict()
        typer.echo(json.dumps(d))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"inverity analyse {input}", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    for k, v in profile_rows(d):
        t.add_row(k, v)
    for r in d.get("reasons") or []:
        t.add_row("reason", r)
    if features:
        for k, v in d["features"].items():
            t.add_row(f"  {k}", f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(t)
    if plan is not None:
        for line in plan.explain():
            console.print(line, highlight=False, markup=False)
