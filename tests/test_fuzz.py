"""Short, bounded runs of ``benchmarks/fuzz.py`` (STYLE.md 7) and every finding it ever saved, replayed.

Each target — the loader, the ``.inv`` container parser, the TOML policy parser — may only raise
``InverityError`` subclasses, never hang, never allocate past its budget. The long runs are
``python benchmarks/fuzz.py --seconds 60``; findings land in ``tests/fixtures/fuzz/<target>/`` and stay there as
regression cases.
"""
from __future__ import annotations

import pytest

from benchmarks.fuzz import TARGETS, Finding, execute, fuzz_hypothesis, regression_inputs

#: a cap, not a budget: the run stops after BATCHES × 40 examples (a few seconds on an idle machine) or this many
#: seconds (it ran the whole 30 s per target before: the harness repeats batches until its time is up)
SECONDS = 30.0
BATCHES = 5


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_short_fuzz_run_finds_nothing(name: str) -> None:
    stats = fuzz_hypothesis(TARGETS[name], seconds=SECONDS, seed=0, max_examples=40, batches=BATCHES)
    assert stats.executions >= 100
    assert not stats.findings, "; ".join(f"{f.kind}: {f.message} on {f.data[:80]!r}" for f in stats.findings)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_are_handled(name: str) -> None:
    target = TARGETS[name]
    for data in target.seeds():
        execute(target, data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_saved_findings_stay_fixed(name: str) -> None:
    paths = regression_inputs(name)
    for path in paths:
        try:
            execute(TARGETS[name], path.read_bytes())
        except Finding as finding:
            pytest.fail(f"{path.name}: {finding}")


def test_the_harness_reports_what_it_must() -> None:
    """A target that raises a non-Inverity exception, or allocates past its budget, is a finding."""
    from benchmarks.fuzz import Target

    def boom(data: bytes) -> None:
        raise KeyError("not an InverityError")

    with pytest.raises(Finding, match="exception: KeyError"):
        execute(Target("boom", boom, lambda: [b""]), b"x")

    def hog(data: bytes) -> None:
        bytearray(8 << 20)

    with pytest.raises(Finding, match="memory: peak 8 MiB"):
        execute(Target("hog", hog, lambda: [b""], memory_budget=1 << 20), b"x")


def test_in_process_training_leaves_no_flush_to_zero_state(tmp_path) -> None:
    """``train`` flushes denormals for speed; in-process it must restore IEEE behaviour (hypothesis and numpy
    callers in the same process rely on subnormal floats)."""
    import numpy as np
    from PIL import Image as PILImage
    from skimage import data

    from inverity.stages.learned.train import TrainConfig, train

    d = tmp_path / "train"
    d.mkdir()
    PILImage.fromarray(data.astronaut()[:128, :128]).save(d / "a.png")
    train(TrainConfig(train_dir=str(d), ckpt=str(tmp_path / "c.pt"), steps=1, batch=1, crop=64, warmup=0,
                      N=8, M=8, threads=1))
    tiny = np.float64(5e-324)
    assert tiny > 0 and tiny * 1.0 != 0.0
    import torch

    assert torch.tensor([1e-40], dtype=torch.float32).item() != 0.0
