"""Split a training checkpoint into files the device tool can bring back, and join them again.

The device tool returns files of at most 16 MiB from ``$OUT``; an N=64/M=96 checkpoint with its Adam state is
~21 MB. ``split`` writes the model, step, RNG, history and config to ``ckpt_model.pt`` and the optimiser state
to ``ckpt_opt.pt``; ``join`` puts them back into one checkpoint that ``train.py --ckpt`` resumes.

Usage::

    python scripts/gpu/ckpt.py split CKPT OUTDIR
    python scripts/gpu/ckpt.py join DIR CKPT
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

LIMIT = 16 * 2**20


def split(ckpt: Path, out: Path) -> None:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v for k, v in state.items() if k != "opt"}, out / "ckpt_model.pt")
    torch.save(state["opt"], out / "ckpt_opt.pt")
    for name in ("ckpt_model.pt", "ckpt_opt.pt"):
        size = (out / name).stat().st_size
        print(f"{name}: {size / 2**20:.1f} MiB" + ("  (over the 16 MiB the device tool returns)" if size > LIMIT else ""))


def join(folder: Path, ckpt: Path) -> None:
    state = torch.load(folder / "ckpt_model.pt", map_location="cpu", weights_only=False)
    state["opt"] = torch.load(folder / "ckpt_opt.pt", map_location="cpu", weights_only=False)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    tmp = ckpt.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, ckpt)
    print(f"{ckpt}: step {state['step']}")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("split", "join"):
        sys.exit(__doc__)
    (split if sys.argv[1] == "split" else join)(Path(sys.argv[2]), Path(sys.argv[3]))
