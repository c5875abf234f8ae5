"""CLI: ``inverity verify ORIGINAL CANDIDATE [--policy P] [--json]`` — the :class:`~inverity.verify.Verdict`.

Exit status 0 when the candidate meets the policy's floors, 1 when it does not, 2 on an error (unreadable file,
unknown policy). Both files are read by :func:`inverity.image.load`, so the candidate may be anything inverity
writes — a standard image file or a learned-stage ``.inv`` stream — detected by content, not by extension.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from . import app, fail

__all__ = ["floors_for_policy"]

def floors_for_policy(policy: str, original: Any = None) -> tuple[Any, str]:
    """``(Floors, description)`` for a policy name or TOML file (:func:`inverity.policy.get_policy`; for ``auto``,
    the concrete policy the router chooses for ``original`` when it is given)."""
    from .. import policy as pol_mod

    pol = pol_mod.get_policy(policy)
    if pol.name == "auto" and original is not None:
        from ..analyse import analyse
        from ..route import resolve_policy

        res: Any = resolve_policy(analyse(original), pol, original)
        concrete = getattr(res, "policy", res)  # a Resolution(policy, reason), or a bare policy
        concrete = pol_mod.get_policy(concrete) if isinstance(concrete, str) else concrete
        return concrete.floors, f"auto → {concrete.name}"
    return pol.floors, str(pol.name)


@app.command("verify")
def verify_cmd(
    original: Path = typer.Argument(..., help="The original image."),
    candidate: Path = typer.Argument(..., help="The reconstruction: any file inverity writes (.inv included)."),
    policy: str = typer.Option("auto", "--policy", "-p", help="Policy whose floors apply (name or TOML file)."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Check CANDIDATE against ORIGINAL under a policy's floors: exit 0 passed, 1 failed, 2 error."""
    from ..errors import InverityError
    from ..image import load
    from ..verify import verify

    try:  # both through the pipeline's own door, so the verdict is about the pixels the pipeline judged
        a = load(original)
        b = load(candidate)
        floors, pol_desc = floors_for_policy(policy, a)
    except InverityError as exc:
        raise fail(str(exc)) from None
    verdict = verify(a, b, floors)
    if as_json:
        doc = verdict.to_dict()
        doc.update({"original": str(original), "candidate": str(candidate), "policy": pol_desc,
                    "floors": {k: v for k, v in floors.to_dict().items()}})
        typer.echo(json.dumps(doc))
    else:
        _print_rich(verdict, original, candidate, pol_desc)
    raise typer.Exit(0 if verdict.passed else 1)


def _print_rich(verdict: Any, original: Path, candidate: Path, pol_desc: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console(highlight=False, soft_wrap=True)
    mark = "[bold green]PASSED[/]" if verdict.passed else "[bold red]FAILED[/]"
    con.print(f"{mark} {candidate} against {original} (policy {pol_desc})")
    failed = set(range(len(verdict.failures)))
    for i, reason in enumerate(verdict.reasons):
        con.print(f"  {'[red]✗[/]' if i in failed else '[green]✓[/]'} {escape(reason)}")
    ck = verdict.checks
    t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    t.add_column("measure")
    t.add_column("value", justify="right")
    for key, unit in (("psnr", "dB"), ("ssimulacra2", ""), ("max_abs_error", ""), ("worst_tile_psnr", "dB"),
                      ("local_snr", "dB"), ("local_structure", "dB"), ("tile_band_kept", ""),
                      ("edge_missing", ""), ("edge_invented", ""), ("verify_ms", "ms")):
        if key in ck and not isinstance(ck[key], (dict, list)):
            v = ck[key]
            t.add_row(key, (f"{v:.3g}" if isinstance(v, float) and v < 10 else
                            f"{v:.1f}" if isinstance(v, float) else str(v)) + (f" {unit}" if unit else ""))
    con.print(t)
