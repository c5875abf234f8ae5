"""Benchmarks: what ``inverity bench`` and ``benchmarks/run_all.sh`` run.

Submodules (import the one you need; this package imports none of them, so ``import inverity.bench`` stays
cheap and a submodule that is still being written cannot break the others):

- :mod:`inverity.bench.corruptions` — the 15 corruptions × 5 severities of ImageNet-C, as used for Kodak-C /
  CLIC-C, at any image size, deterministic for a seed.
- :mod:`inverity.bench.bdrate` — Bjøntegaard delta rate and delta PSNR.
- :mod:`inverity.bench.rd` — rate-distortion curves of every stage on clean and corrupted data, BD-rate tables.
- :mod:`inverity.bench.spectral` — error spectra |FFT(x̂ − x)|: 2-D maps, radial profiles, band tables.
- :mod:`inverity.bench.plots` — the matplotlib (Agg) figures.
- :mod:`inverity.bench.routing` — the router against an exhaustive per-image oracle (regret, violations).
- :mod:`inverity.bench.planted` — planted local defects: does the verifier catch what averages hide?
"""
from __future__ import annotations

__all__: list[str] = []
