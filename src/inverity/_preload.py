"""Imported by the local engine's fork server (``multiprocessing`` *forkserver* preload): importing this module
warms the server up (:func:`inverity._warm.warm`, classical stages only — never torch), so that every pool worker
forked from it starts with the pipeline's modules and models already loaded. Nothing else imports it.
"""
from __future__ import annotations

from ._warm import warm

warm(learned=False)
