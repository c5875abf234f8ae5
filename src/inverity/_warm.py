"""Warm a process up for the pipeline: import its modules and load its models once, before the first asset.

A pool worker (:mod:`inverity.engine.local`) or the server calls :func:`warm` once at start, so the first asset
it compresses does not also pay for importing the codecs, the metrics and the router, reading the kind
classifier, the OOD statistics and the search model — about half a second of a 0.4 MP photo's time otherwise.
Each of those is cached per process by the module that owns it; this only asks for them early.
torch is imported only when the learned stage may be used (``learned=True``): it costs seconds and memory that a
classical-only batch never needs.
"""
from __future__ import annotations

__all__ = ["warm"]

#: what this process has warmed up already (False: the classical pipeline; True: also torch): a worker forked
#: from a warmed fork server (:mod:`inverity.engine.local`) skips the work it inherited
_done: set[bool] = set()


def warm(learned: bool = False) -> None:
    """Import the pipeline's modules and load its models in this process (idempotent, never raises)."""
    if learned in _done:
        return
    try:
        import numpy as np

        from .analyse import analyse
        from .image import Image
        from .pipeline import Toolkit
        from .search import load_predictor

        Toolkit.default()                                   # image, stages, verify, policy, route
        import imagecodecs

        imagecodecs.version(dict)                            # every codec extension (stage version strings)
        rng = np.random.default_rng(0)
        px = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
        prof = analyse(Image(px, 8, "png", {}))              # kind classifier + OOD statistics
        load_predictor(prof.features, prof.kind, 96 * 96)    # the search model file
        if learned:
            import torch  # noqa: F401 - the learned stage's runtime
        _done.update({False, learned})
    except Exception:  # noqa: BLE001 - warming is an optimisation: the first asset then loads what it needs
        return

