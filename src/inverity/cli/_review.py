"""``inverity review``: the human review step for teams without the service (see :mod:`inverity.review`).

::

    inverity review OUTDIR                         the pending outputs, oldest first
    inverity review OUTDIR --approve ID [--by NAME]
    inverity review OUTDIR --reject ID --note "..." [--by NAME]     (re-routes the asset without that stage)
    inverity review OUTDIR --import verdicts.json  (exported by the audit page; stale verdicts are refused)
    inverity review log OUTDIR [--json] [-o FILE]  the append-only review log
    inverity review report OUTDIR [--json] [--stage S|all]   where reviewers rejected the learned stage

The reviewer's name is ``--by``, else ``$INVERITY_REVIEWER``, else the login name.
"""
from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from . import app, fail

__all__: list[str] = []

_ACTIONS = ("log", "report")


def _reviewer(by: Optional[str]) -> str:
    name = by or os.environ.get("INVERITY_REVIEWER")
    if not name:
        try:
            name = getpass.getuser()
        except Exception:  # noqa: BLE001 - no login name (containers): the user must say who they are
            name = None
    if not name:
        raise fail("who is reviewing? pass --by NAME or set INVERITY_REVIEWER")
    return name


def _emit(lines: list[str], out: Optional[Path]) -> None:
    if out is None:
        for ln in lines:
            typer.echo(ln)
        return
    from .._atomic import atomic_write_text

    atomic_write_text(out, "".join(ln + "\n" for ln in lines))
    typer.echo(str(out), err=True)


def _show_result(r: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(r, sort_keys=True, default=str))
        return
    line = f"{r['asset']}: {r['review']['history'][-1]['verdict'] if r['review'].get('history') else r['state']}"
    if r.get("rerouted"):
        line += f"; re-routed to {r['stage']} ({r['state'].replace('_', ' ')})"
    elif r.get("error"):
        line += f"; not re-routed: {r['error']}"
    typer.echo(line)


@app.command("review")
def review_cmd(
    args: List[str] = typer.Argument(..., metavar="[log|report] OUTDIR",
                                     help="An 'inverity compress' output directory, optionally after 'log' or "
                                          "'report'."),
    approve: Optional[str] = typer.Option(None, "--approve", metavar="ID", help="Approve this pending output."),
    reject: Optional[str] = typer.Option(None, "--reject", metavar="ID",
                                         help="Reject this pending output (needs --note); it is re-routed."),
    note: str = typer.Option("", "--note", help="Why (required with --reject; recorded in the log)."),
    import_file: Optional[Path] = typer.Option(None, "--import", metavar="FILE",
                                               help="Apply a verdicts JSON file exported by the audit page."),
    by: Optional[str] = typer.Option(None, "--by", help="Reviewer name (default $INVERITY_REVIEWER or login)."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines on stdout."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="log/report: write to this file."),
    stage: str = typer.Option("learned", "--stage", help="report: the stage whose rejections to study (or all)."),
    all_states: bool = typer.Option(False, "--all", help="List every reviewed output, not only pending ones."),
) -> None:
    """List pending outputs, approve or reject them, import verdicts; 'log' exports the log, 'report' the
    reviewers' feedback on the learned stage."""
    from .. import review

    action = args[0] if len(args) == 2 and args[0] in _ACTIONS else None
    if len(args) != (2 if action else 1):
        raise fail(f"expected OUTDIR, 'log OUTDIR' or 'report OUTDIR', got {' '.join(args)!r}")
    outdir = Path(args[-1])
    if not outdir.is_dir():
        raise fail(f"{outdir}: not a directory")
    if action == "log":
        entries = review.review_log(outdir)
        if as_json:
            _emit([json.dumps(e, sort_keys=True) for e in entries], out)
        else:
            _emit([f"{e['at']}  {e['by']:<12} {e['verdict']:<8} {e['asset']}  {e['stage']}  "
                   f"sha256 {str(e['output_sha256'])[:12]}  {e['note']}" for e in entries], out)
        return
    if action == "report":
        fb = review.feedback(review.review_log(outdir), None if stage == "all" else stage)
        _emit([json.dumps(fb, sort_keys=True)] if as_json else review.feedback_text(fb), out)
        return
    if sum(x is not None for x in (approve, reject, import_file)) > 1:
        raise fail("give one of --approve, --reject, --import")
    if approve or reject:
        verdict, aid = ("approve", approve) if approve else ("reject", reject)
        if verdict == "reject" and not note.strip():
            raise fail("--reject needs --note \"why\"")
        _show_result(review.apply_verdict(outdir, str(aid), verdict, _reviewer(by), note), as_json)
        return
    if import_file is not None:
        applied, refused = review.import_verdicts(outdir, import_file)
        for r in applied:
            _show_result(r, as_json)
        for msg in refused:
            typer.echo(f"inverity: refused: {msg}", err=True)
        if refused:
            raise typer.Exit(1)
        return
    states = ("pending", "approved", "rejected") if all_states else ("pending",)
    items = review.pending(outdir, states)
    if as_json:
        for it in items:
            typer.echo(json.dumps(it, sort_keys=True, default=str))
        return
    if not items:
        typer.echo("nothing waiting for review" if not all_states else "no reviewed outputs")
        return
    for it in items:
        typer.echo(f"{it['state']:<8} {it['asset']}  {it['policy']}  {it['stage']}  {it['kind'] or '?'}  "
                   f"{it['bytes'] or '?'} B  queued {it['queued_at']}  sha256 {str(it['output_sha256'])[:12]}")
