"""``/openapi.json`` and ``/docs``, behind the token when one is set, with nothing loaded from elsewhere.

FastAPI's own ``/docs`` pulls Swagger UI from a CDN (a blank page offline, and a third party told of every visit)
and is served without authentication; it is switched off in :func:`~inverity.server.create_app`. This page is
self-contained: the OpenAPI document rendered as plain HTML (every path, method, summary, parameter and
response), and a Content-Security-Policy that forbids any request but to this page itself.
"""
import html
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse

from ..deps import require_token

__all__ = ["router", "render"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_token)])
#: nothing but inline style: no script, no image, no font, no connection anywhere
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


@router.get("/openapi.json")
async def openapi(request: Request) -> Any:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def docs(request: Request) -> Any:
    return HTMLResponse(render(request.app.openapi()), headers={"Content-Security-Policy": CSP})


def render(doc: dict[str, Any]) -> str:
    """The OpenAPI document as one self-contained HTML page.

    Examples
    --------
    >>> page = render({"info": {"title": "t", "version": "1"}, "paths": {"/x": {"get": {"summary": "S"}}}})
    >>> "<code>/x</code>" in page and "http" not in page.replace("http-equiv", "")
    True
    """
    e = html.escape
    info = doc.get("info", {})
    out = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
           f"<title>{e(info.get('title', 'API'))} API</title><style>"
           "body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
           "code{background:#f3f3f3;padding:0 .2em}section{border-top:1px solid #ddd;padding:.4rem 0}"
           ".m{font-weight:bold;text-transform:uppercase;display:inline-block;width:4.5em}"
           "</style></head><body>",
           f"<h1>{e(info.get('title', 'API'))} <small>{e(str(info.get('version', '')))}</small></h1>",
           f"<p>{e(info.get('description', ''))}</p>",
           "<p>The machine-readable document is <a href=openapi.json><code>openapi.json</code></a>.</p>"]
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            out.append(f"<section><h2><span class=m>{e(method)}</span> <code>{e(path)}</code></h2>")
            out.append(f"<p><b>{e(op.get('summary', ''))}</b> {e(op.get('description', ''))}</p>")
            if op.get("security"):
                out.append("<p>Needs <code>Authorization: Bearer &lt;token&gt;</code>.</p>")
            params = [f"<li><code>{e(p['name'])}</code> ({e(p.get('in', ''))}) {e(p.get('description', ''))}</li>"
                      for p in op.get("parameters", [])]
            if params:
                out.append("<p>Parameters:</p><ul>" + "".join(params) + "</ul>")
            body = op.get("requestBody", {})
            if body:
                out.append(f"<p>Body ({e(', '.join(body.get('content', {})))}): {e(body.get('description', ''))}</p>")
            codes = [f"<li><code>{e(str(code))}</code> {e(r.get('description', ''))}</li>"
                     for code, r in op.get("responses", {}).items()]
            out.append("<p>Responses:</p><ul>" + "".join(codes) + "</ul></section>")
    out.append("</body></html>")
    return "\n".join(out)
