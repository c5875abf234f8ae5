"""CLI commands for single stages, no routing and no verification: ``encode``, ``decode`` and ``codecs``.

``encode`` runs one stage on one image; ``decode`` turns anything inverity wrote back into pixels, detecting the
format from the content (never the extension); ``codecs`` lists every registered stage with its library version
and capabilities, and the learned models when the model zoo is installed.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from . import app

__all__ = ["parse_opt", "decode_bytes", "codecs_info"]

_TRUE, _FALSE = ("true", "yes", "on"), ("false", "no", "off")


def _typed(text: str) -> Any:
    """``"6"`` -> 6, ``"0.5"`` -> 0.5, ``"true"``/``"false"`` -> bool, anything else stays a string."""
    low = text.strip().lower()
    if low in _TRUE or low in _FALSE:
        return low in _TRUE
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_opt(text: str) -> tuple[str, Any]:
    """Parse one ``--opt key=value``; the value becomes an int, float, bool or string.

    Examples
    --------
    >>> parse_opt("method=6"), parse_opt("htj2k=true"), parse_opt("distance=0.5"), parse_opt("mode=fast")
    (('method', 6), ('htj2k', True), ('distance', 0.5), ('mode', 'fast'))
    >>> parse_opt("near")
    Traceback (most recent call last):
    ...
    ValueError: --opt expects key=value, got 'near'
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--opt expects key=value, got {text!r}")
    return key.strip(), _typed(value)


def _stage_options(codec_id: str, pairs: list[str]) -> dict[str, Any]:
    """Typed options; an option whose declared default is a string keeps the raw text (``subsampling=420``)."""
    from ..stages.base import stage_class

    specs = getattr(stage_class(codec_id), "option_specs", {})
    opts: dict[str, Any] = {}
    for text in pairs:
        key, value = parse_opt(text)
        if key in specs and isinstance(specs[key].default, str):
            value = text.partition("=")[2]
        opts[key] = value
    return opts


def decode_bytes(data: bytes, name: str = "<bytes>") -> tuple[Any, str]:
    """``(Image, format name)`` of ``data`` — a thin call of :func:`inverity.image.load`, the one door every
    command reads pixels through (limits, truncation and animation checks, ``.inv`` included).

    Examples
    --------
    >>> import numpy as np, imagecodecs
    >>> image, fmt = decode_bytes(imagecodecs.png_encode(np.zeros((2, 3), np.uint16)))
    >>> fmt, image.pixels.shape, str(image.dtype)
    ('png', (2, 3, 1), 'uint16')
    """
    from ..image import load

    image = load(data, name=name)
    return image, image.source_format


@app.command("encode")
def encode_cmd(
    input: Path = typer.Argument(..., help="Image to encode (any format inverity.image.load reads)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (written atomically)."),
    codec: str = typer.Option(..., "--codec", "-c", help="Stage id, see `inverity codecs`."),
    quality: Optional[int] = typer.Option(None, "--quality", "-q",
                                          help="0-100 for classical lossy stages, 1..K for learned; higher = better."),
    opt: Optional[list[str]] = typer.Option(None, "--opt", help="Stage option key=value (repeatable)."),
) -> None:
    """Encode INPUT with one stage: no routing, no verification (for experts and benchmarks)."""
    from .._atomic import atomic_write_bytes
    from ..errors import CodecError
    from .._promises import attach_source
    from ..image import load
    from ..outputs import check_extension, check_output
    from ..stages.base import get_stage

    check_output(output, [input])
    image = load(input)
    attach_source(image, input.read_bytes())   # stages that work on the file itself (jxl-jpeg, original)
    try:
        stage = get_stage(codec, quality=quality, **_stage_options(codec, opt or []))
    except (TypeError, ValueError) as exc:  # a bad option or quality: one line, exit 2, like any InverityError
        raise CodecError(str(exc)) from None
    exts = tuple(getattr(stage.capabilities, "extensions", ()) or ())
    own = getattr(stage, "extension", None)
    if isinstance(own, str) and own:   # options may change the extension (HTJ2K's .j2c): the stage's own first
        exts = (own if own.startswith(".") else f".{own}",) + tuple(e for e in exts if e != own)
    check_extension(output, stage.codec_id, exts, _known_extensions())
    data = stage.encode(image)
    atomic_write_bytes(output, data)
    if exts and output.suffix.lower() not in exts:
        typer.echo(f"inverity: note: {stage.codec_id} output usually has the extension {exts[0]}", err=True)
    bpp = 8 * len(data) / (image.width * image.height)
    typer.echo(f"{input} -> {output}: {stage.codec_id} {json.dumps(stage.get_config())}, "
               f"{len(data)} bytes, {bpp:.3f} bpp")


def _known_extensions() -> set[str]:
    """Every extension an image format is known by (the format registry's, plus the stages' own)."""
    from ..formats import known_extensions
    from ..stages.base import list_stages

    known = known_extensions()
    for cls in list_stages().values():
        known.update(str(e).lower() for e in (getattr(cls.capabilities, "extensions", ()) or ()))
    return known


@app.command("decode")
def decode_cmd(
    file: Path = typer.Argument(..., help="A file inverity wrote (format detected from its content)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output image; format from the extension (PNG default)."),
) -> None:
    """Decode FILE to an image file; 16-bit stays 16-bit."""
    from ..errors import InputError
    from ..image import load, save
    from ..outputs import check_output

    check_output(output, [file])
    image = load(file)  # the same door as every other command: pixel limit, truncation, animation
    save(image, output)
    typer.echo(f"{file} ({image.source_format}) -> {output}: {image.width}x{image.height} {image.colour}, "
               f"{image.bit_depth}-bit {image.dtype}")


def _model_rows() -> tuple[list[dict[str, Any]], str | None]:
    """Learned models from the zoo, or ``([], why)`` when it is not installed or cannot be read."""
    from ..errors import InverityError

    try:
        from ..stages.learned import zoo  # imports torch: only this command pays for it
    except ImportError as exc:
        return [], f"learned model zoo not installed ({exc.name or exc})"
    try:
        models = zoo.list_models()
        default = zoo.default_model() if hasattr(zoo, "default_model") else getattr(zoo, "DEFAULT_MODEL", None)
    except InverityError as exc:
        return [], f"learned model zoo unreadable: {exc}"
    rows = []
    for m in models:
        d = m.to_dict() if hasattr(m, "to_dict") else dict(m) if isinstance(m, dict) else vars(m)
        rows.append({"name": str(d.get("name")), "qualities": list(d.get("qualities") or []),
                     "sha256": d.get("sha256"), "decode_ms_per_mp": d.get("decode_ms_per_mp"),
                     "default": d.get("name") == default})
    return rows, None if rows else "the zoo lists no models"


def codecs_info() -> dict[str, Any]:
    """What ``inverity codecs --json`` prints: ``{"imagecodecs", "stages": [...], "models": [...]}``."""
    import imagecodecs

    from ..stages.base import list_stages

    stages = []
    for codec_id, cls in list_stages().items():
        caps = cls.capabilities
        specs = getattr(cls, "option_specs", {})
        rng = getattr(cls, "quality_range", None)
        rng = rng if isinstance(rng, (tuple, list)) else None
        stages.append({
            "codec_id": codec_id, "library": cls.library_version(), "available": bool(cls.available()),
            "lossless": caps.lossless, "near_lossless": caps.near_lossless, "learned": caps.learned,
            "standard": caps.standard, "bit_depths": list(caps.bit_depths), "channels": list(caps.channels),
            "alpha": caps.alpha, "metadata": list(caps.metadata), "extensions": list(caps.extensions),
            "mime": caps.mime,
            "quality": {"range": list(rng), "default": getattr(cls, "default_quality", None)} if rng else None,
            "options": {k: v.default for k, v in specs.items()} if specs else list(cls.options),
        })
    models, why = _model_rows()
    out: dict[str, Any] = {"imagecodecs": imagecodecs.__version__, "stages": stages, "models": models}
    if why:
        out["models_note"] = why
    return out


@app.command("codecs")
def codecs_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """Every stage with its codec id, library version and capabilities; learned models with their sha256."""
    info = codecs_info()
    if json_out:
        typer.echo(json.dumps(info, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    out = Console(file=sys.stdout, width=max(140, Console(file=sys.stdout).width))
    t = Table(title=f"inverity stages (imagecodecs {info['imagecodecs']})", pad_edge=False)
    for col in ("codec_id", "library", "lossless", "bits", "channels", "alpha", "metadata", "ext", "quality",
                "options"):
        t.add_column(col, no_wrap=col in ("codec_id", "ext"))
    for s in info["stages"]:
        lossless = "near" if s["near_lossless"] else ("yes" if s["lossless"] else "no")
        q = s["quality"]
        t.add_row(s["codec_id"] + ("" if s["available"] else " (unavailable)"), s["library"], lossless,
                  "/".join(map(str, s["bit_depths"])), ",".join(map(str, s["channels"])),
                  "yes" if s["alpha"] else "no", ",".join(s["metadata"]) or "-", " ".join(s["extensions"]),
                  f"{q['range'][0]}-{q['range'][1]} ({q['default']})" if q else ("per model" if s["learned"] else "-"),
                  ", ".join(f"{k}={v}" for k, v in s["options"].items()) if isinstance(s["options"], dict)
                  else ", ".join(s["options"]) or "-")
    out.print(t)
    if info["models"]:
        m = Table(title="learned models", pad_edge=False)
        for col in ("name", "qualities", "sha256", "decode ms/MP"):
            m.add_column(col)
        for row in info["models"]:
            sha = row["sha256"]
            sha = ", ".join(str(v)[:12] for v in sha.values()) if isinstance(sha, dict) else str(sha or "-")[:16]
            m.add_row(row["name"] + (" (default)" if row["default"] else ""),
                      ",".join(map(str, row["qualities"] or [])) or "-", sha,
                      "-" if row["decode_ms_per_mp"] is None else f"{row['decode_ms_per_mp']:.0f}")
        out.print(m)
    else:
        out.print(f"learned models: none ({info.get('models_note')})")
