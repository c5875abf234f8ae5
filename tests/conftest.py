"""Shared fixtures. Tests never need ../shared; those that use its datasets skip when it is absent."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

# ``from tests.adversarial.corpus import generate`` works in every test module (the server tests reuse the
# corpus), under ``pytest`` as under ``python -m pytest``; appended, so nothing installed is shadowed.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/datasets is not present")
    return SHARED


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a learned-stage test module (tiny images: one thread is faster than two on a shared
    2-core machine; a test that compares thread counts sets its own). Use with
    ``pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
