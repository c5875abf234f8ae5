"""Image-quality metrics: global (PSNR, MS-SSIM, SSIMULACRA 2, max abs error) and local (tiles, bands, edges).

Every function takes an :class:`~inverity.image.Image` or an ``ndarray`` (H×W, H×W×C; uint8, uint16 or float in
0..1) and is bit-depth aware: errors are measured relative to the original's ``max_value`` (255 for 8-bit, 4095
for a 12-bit CT stored in uint16, 1.0 for floats), so a PSNR means the same thing at every depth.

High-bit-depth content often uses a small part of its nominal range: a CT slice stored with a signed offset sits
in ≈ 32900–34750 of 0–65535, a 12-bit sensor frame saved as 16-bit PNG in 0–4095. Relative to the nominal peak
such an image looks flat — an error of 900 levels reads as PSNR 46 dB, SSIMULACRA 2 sees a uniform gray, and no
edge or frequency band is strong enough to judge. :func:`content_window` finds the range the original actually
uses (robust percentiles, never of the reconstruction) and the metrics' ``window`` argument rescales *both*
images to it — the same idea as a radiologist's window/level. 8-bit content, floats and content spanning most of
its nominal range keep the nominal scale, exactly as before.

The local helpers exist for :mod:`inverity.verify`: a learned codec fails *locally and plausibly* (a lesion
smoothed away, a line moved by two pixels, a text block blurred), and averages hide that. So besides the global
numbers this module computes per-tile PSNR, a per-window signal-to-error ratio, per-radial-band spectral
retention (globally and per window) and edge maps.

``ssimulacra2`` is a re-implementation of Cloudinary's SSIMULACRA 2 (libjxl ``tools/ssimulacra2.cc``, April 2023
weights): linear RGB → XYB, 6 scales, an SSIM map and two edge-difference maps per channel, 1- and 4-norms, 108
published weights and the final polynomial. It is ~15-20× faster than the pure-NumPy PyPI package ``ssimulacra2``
because it blurs all maps of a scale in one batch of small matrix products (a separable 11-tap Gaussian, σ = 1.5,
zero outside the image like libjxl's recursive Gaussian), works in float32, and skips the maps whose weights are
exactly zero. It agrees with the package to within a few hundredths on photographs (see
``benchmarks/ssimulacra2_check.py``).

The implementation lives in private modules by concern (``_prep``: pixels, pairs, the content window, luma;
``_basic``: MSE, PSNR, max error; ``_msssim``; ``_ssimulacra2``; ``_blur``: the batched Gaussian; ``_local``:
tiles and windows; ``_spectral``: bands; ``_edges``). This package re-exports their public names.
"""
from __future__ import annotations

from ._basic import max_abs_error, mse, psnr
from ._blur import gaussian_blur
from ._edges import edge_map, gradient_magnitude
from ._local import fine_error_maps, local_error_maps, local_snr_map, tile_psnr_map
from ._msssim import ms_ssim
from ._prep import (WINDOW_MAX_SHARE, WINDOW_MIN_SHARE, WINDOW_PERCENTILES, ContentWindow, as_float, content_window,
                    luma, luminance)
from ._spectral import DEFAULT_BANDS, band_retention
from ._ssimulacra2 import S2_FLOOR, ssimulacra2

# Building blocks inverity.verify reuses (its checks share one squared-error map and one BLAS guard across
# metrics): importable from here (explicit re-exports), but not part of the star-export below.
from ._basic import psnr_of_mse as psnr_of_mse
from ._blur import SingleThreadBlas as SingleThreadBlas
from ._local import squared_error as squared_error, tile_psnr as tile_psnr
from ._prep import ImageLike as ImageLike, pixels as pixels
# the original's side of SSIMULACRA 2, prepared once and scored against many reconstructions
from ._ssimulacra2 import S2Reference as S2Reference, prepare as prepare_ssimulacra2, score as score_ssimulacra2

__all__ = [
    "psnr", "mse", "max_abs_error", "ms_ssim", "ssimulacra2", "S2_FLOOR",
    "ContentWindow", "content_window", "WINDOW_PERCENTILES", "WINDOW_MAX_SHARE", "WINDOW_MIN_SHARE",
    "as_float", "luma", "luminance", "tile_psnr_map", "local_error_maps", "local_snr_map", "fine_error_maps", "band_retention", "DEFAULT_BANDS",
    "gaussian_blur",
    "gradient_magnitude", "edge_map",
]
