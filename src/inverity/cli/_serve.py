"""CLI command ``inverity serve``: the HTTP service over a store directory (see :mod:`inverity.server`)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import app, fail

__all__: list[str] = []

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@app.command("serve")
def serve_cmd(
    store: Path = typer.Option(..., "--store", help="Directory for originals, outputs, renditions and the catalog."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    tokens: Optional[List[str]] = typer.Option(
        None, "--token", envvar="INVERITY_TOKEN", show_envvar=True,
        help="Bearer token clients must send (prefer the environment variable: a command line is visible to "
             "other local users). Repeat as NAME=SECRET to name a reviewer (review API and /review page)."),
    policy_files: Optional[List[Path]] = typer.Option(
        None, "--policy", help="A policy TOML file clients may name by its 'name' (repeatable)."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve WITHOUT authentication (explicit opt-out)."),
    max_body: int = typer.Option(64 * 1024 * 1024, "--max-body", min=1, help="Largest request body, bytes (413)."),
    max_pixels: int = typer.Option(50_000_000, "--max-pixels", min=1,
                                   help="Largest image, width x height (413; checked before decoding)."),
    timeout: float = typer.Option(120.0, "--timeout", min=0.001, help="Seconds per request (504 beyond)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                          help="Threads for compression work (default: CPU count)."),
    public_reads: bool = typer.Option(
        False, "--public-reads", help="GET/HEAD of an image needs no token (for <img src>); uploads, decision "
                                      "records and the docs still do."),
    url_secret: Optional[str] = typer.Option(
        None, "--url-secret", envvar="INVERITY_URL_SECRET", show_envvar=True,
        help="Key of the signed read URLs (?exp=&sig=); default: derived from the token."),
    header_timeout: float = typer.Option(10.0, "--header-timeout", min=0.1,
                                         help="Seconds a client has to send a request's headers (slowloris guard)."),
    keep_alive: int = typer.Option(5, "--keep-alive", min=1, help="Seconds an idle keep-alive connection stays open."),
    effort: str = typer.Option(
        "policy", "--effort", help="Quality-search effort for uploads and renditions: policy (each policy's "
                                   "own), fast, balanced or max. fast: faster uploads, more bytes; outputs are "
                                   "verified in full at any effort."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve upload -> compress and Accept-negotiated downloads over HTTP (needs the "server" extra)."""
    from ..server import ServerConfig, parse_tokens, register_policy_files, serve

    from ..search import EFFORTS

    if effort != "policy" and effort not in EFFORTS:
        raise fail(f"--effort must be one of {', '.join(EFFORTS)}, policy; got {effort!r}")
    token, reviewers = parse_tokens(tokens)
    if reviewers and not token:   # reviewers only: the API still needs a token, and only theirs will do
        import secrets

        token = secrets.token_urlsafe(32)
    register_policy_files(policy_files or [])
    if no_auth:
        token = None
        typer.echo("inverity: warning: --no-auth: anyone who can reach the port can upload and download",
                   err=True)
    elif not token:
        raise fail("no token: pass --token or set INVERITY_TOKEN (or --no-auth to serve without authentication)")
    if host not in _LOOPBACK:
        typer.echo(f"inverity: note: listening on {host} over plain HTTP; put a TLS proxy in front of it",
                   err=True)
    cfg = ServerConfig(store=store, token=token, max_body=max_body, max_pixels=max_pixels, timeout=timeout,
                       workers=workers, public_reads=public_reads,
                       url_secret=url_secret.encode("utf-8") if url_secret else None,
                       header_timeout=header_timeout, keep_alive=keep_alive, reviewers=() if no_auth else reviewers,
                       effort=None if effort == "policy" else effort)
    sys.stderr.flush()
    serve(cfg, host=host, port=port, log_level=log_level)
