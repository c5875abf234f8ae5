"""Sobel gradient magnitude and luma edge maps."""
from __future__ import annotations

import numpy as np

from ._prep import ContentWindow, ImageLike, luma


def gradient_magnitude(x: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of a 2-D float image, scaled so a step of height h reads ≈ h at the edge.

    Examples
    --------
    >>> z = np.zeros((5, 6), np.float32); z[:, 3:] = 1
    >>> gradient_magnitude(z)[2].round(2).tolist()
    [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    """
    p = np.pad(np.asarray(x, np.float32), 1, mode="edge")
    # separable Sobel: [1,2,1]/4 smoothing across, central difference along
    sy = p[:-2] + 2 * p[1:-1] + p[2:]
    gx = (sy[:, 2:] - sy[:, :-2]) * np.float32(0.25)
    sx = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]
    gy = (sx[2:] - sx[:-2]) * np.float32(0.25)
    return np.sqrt(gx * gx + gy * gy)


def edge_map(x: ImageLike, threshold: float = 0.12, *, max_value: float | None = None,
             window: ContentWindow | None = None) -> np.ndarray:
    """Boolean map of luma edges whose contrast (Sobel magnitude, 0..1 scale) is at least ``threshold``.

    With ``window`` (the *original's* :class:`ContentWindow`, also for a reconstruction) the contrast is a share
    of the window.

    Examples
    --------
    >>> z = np.zeros((4, 6), np.uint8); z[:, 3:] = 255
    >>> edge_map(z)[1].tolist()
    [False, False, True, True, False, False]
    """
    if window is not None:
        return gradient_magnitude(luma(window.apply(x), 1.0)) >= threshold
    return gradient_magnitude(luma(x, max_value)) >= threshold
