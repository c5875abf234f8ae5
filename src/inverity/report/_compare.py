"""The review page's images of one asset: original, reconstruction and error map at display size, and the three
worst windows (the server's review desk shows them; the audit page has its own, richer layout)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InverityError
from . import _maps
from ._build import _comparable, _png, _read_image


def review_images(original: Path, output: Path) -> dict[str, Any]:
    """PNG bytes of the original, the reconstruction and the error map (display size), their sizes, the three grid
    windows with the largest mean squared error (as fractions of the image, and in pixels) and notes.

    Raises
    ------
    InverityError
        The reconstruction cannot be compared pixel by pixel with the original (other size, channels).
    """
    orig, recon = _read_image(original), _read_image(output)
    rpx, notes = _comparable(orig, recon)
    if rpx is None:
        raise InverityError("; ".join(notes) or "the reconstruction cannot be compared with the original")
    tone = _maps.tone_map_for(orig.pixels, orig.bit_depth)
    size = _maps.preview_size(orig.height, orig.width)

    def show(px: Any) -> bytes:
        return _png(_maps.resize_display(_maps.to_display(px, tone), size))

    err = _maps.abs_error(orig.pixels, rpx)
    full_scale = tone.high - tone.low if tone.note else float(orig.max_value)
    emap, vmax = _maps.error_map(err, full_scale, size)
    # the worst windows: the three grid tiles with the largest mean squared error, as fractions of the image
    h, w = orig.height, orig.width
    t = max(8, min(64, max(h, w) // 4 or 1))
    sq = ((rpx.astype(np.float64) - orig.pixels.astype(np.float64)) ** 2).mean(axis=2)
    ny, nx = -(-h // t), -(-w // t)
    pad = np.pad(sq, ((0, ny * t - h), (0, nx * t - w)), constant_values=np.nan)
    mse = np.nanmean(pad.reshape(ny, t, nx, t).transpose(0, 2, 1, 3).reshape(ny, nx, t * t), axis=2)
    windows = []
    for flat in np.argsort(mse, axis=None)[::-1][:3]:
        iy, ix = divmod(int(flat), nx)
        m = float(mse[iy, ix])
        psnr = None if m == 0 else round(10 * float(np.log10(orig.max_value ** 2 / m)), 2)
        x0, y0 = ix * t, iy * t
        windows.append({"x": x0 / w, "y": y0 / h, "w": min(t, w - x0) / w, "h": min(t, h - y0) / h,
                        "px": [x0, y0, min(t, w - x0), min(t, h - y0)], "psnr": psnr})
    return {"original": show(orig.pixels), "reconstruction": show(rpx), "error": _png(emap),
            "width": size[1], "height": size[0], "full_width": w, "full_height": h, "windows": windows,
            "error_scale": round(float(vmax), 3), "notes": notes + ([tone.note] if tone.note else [])}
