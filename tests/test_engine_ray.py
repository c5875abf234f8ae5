"""The Ray engine gives the same outputs and catalog as the local engine (a local Ray runtime on this host)."""
from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from skimage import data

from inverity.catalog import Catalog
from inverity.pipeline import compress

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'inverity[ray]'")

pytestmark = pytest.mark.slow

_TIMING = {"elapsed_ms", "created_at", "cost_ms", "encode_ms", "decode_ms", "verify_ms", "ms"}


def _norm(x):
    if isinstance(x, dict):
        return {k: _norm(v) for k, v in x.items() if k not in _TIMING and not k.endswith("_ms")
                and k not in ("output", "input_path")}
    if isinstance(x, list):
        return [_norm(v) for v in x]
    return x


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("ray-in")
    imagecodecs.imwrite(src / "astronaut.png", data.astronaut()[100:196, 150:278])
    imagecodecs.imwrite(src / "chelsea.png", data.chelsea()[50:146, 100:228])
    drawing = np.full((96, 128), 255, np.uint8)
    drawing[10:12, 5:120] = 0
    drawing[20:90, 60:62] = 0
    imagecodecs.imwrite(src / "drawing.png", drawing)
    return src


def test_ray_same_outputs_and_catalog_as_local(small_set: Path, tmp_path: Path) -> None:
    local = compress([small_set], tmp_path / "local", policy="auto", jobs=1)
    try:
        remote = compress([small_set], tmp_path / "ray", policy="auto", jobs=2, engine="ray")
    finally:
        if ray.is_initialized():
            ray.shutdown()
    key = lambda r: r["input"]  # noqa: E731
    assert [r["status"] for r in local] == ["done"] * 3
    assert _norm(sorted(local, key=key)) == _norm(sorted(remote, key=key))
    for r in local:
        a = (tmp_path / "local" / r["output_rel"]).read_bytes()
        b = (tmp_path / "ray" / r["output_rel"]).read_bytes()
        assert a == b, r["input"]
    with Catalog(tmp_path / "local" / "inverity.sqlite") as c1, Catalog(tmp_path / "ray" / "inverity.sqlite") as c2:
        assert _norm(sorted(c1.records(), key=key)) == _norm(sorted(c2.records(), key=key))


def test_task_asks_for_gpu_only_under_controlled() -> None:
    from inverity.pipeline import Asset, _Task

    a = Asset("x.png", ".", "x.png")
    assert _Task(a, "controlled", "out", None).wants_gpu
    assert not _Task(a, "delivery", "out", None).wants_gpu
