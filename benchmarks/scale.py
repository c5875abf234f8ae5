"""Batch throughput: ``compress`` with the local engine at --jobs 1 and 2, and with Ray, on the same inputs.

    python benchmarks/scale.py --data ../shared/datasets/kodak --limit 8 [--policy auto]

Prints images/s per configuration and the speed-up as a ratio to ``--jobs 1`` measured in the same run (the
machine is noisy; only same-run ratios mean anything). Every configuration must produce identical outputs.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

from inverity.pipeline import compress


def _digest(outdir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(outdir.rglob("*")):
        if p.is_file() and p.name != "inverity.sqlite" and not p.name.startswith("inverity.sqlite"):
            h.update(p.relative_to(outdir).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--policy", default="auto")
    ap.add_argument("--no-ray", action="store_true")
    a = ap.parse_args(argv)
    files = sorted(p for p in a.data.iterdir() if p.is_file() and not p.name.startswith("."))[: a.limit]
    configs = [("local --jobs 1", "local", 1), ("local --jobs 2", "local", 2)]
    if not a.no_ray:
        try:
            import ray  # noqa: F401
            configs.append(("ray --jobs 2", "ray", 2))
        except ImportError:
            print("ray not installed: skipping (pip install 'inverity[ray]')", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="inverity-scale-"))
    rows, base = [], None
    try:
        for label, engine, jobs in configs:
            out = work / label.replace(" ", "_")
            t0 = time.perf_counter()
            recs = compress(files, out, policy=a.policy, jobs=jobs, engine=engine)
            dt = time.perf_counter() - t0
            failed = sum(r["status"] != "done" for r in recs)
            base = base or dt
            rows.append((label, len(files), dt, len(files) / dt, base / dt, failed, _digest(out)[:12]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{len(files)} images from {a.data}, policy {a.policy}\n")
    print("| engine | images | seconds | images/s | speed-up vs jobs 1 | failed | outputs sha256 |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for label, n, dt, ips, sp, failed, dig in rows:
        print(f"| {label} | {n} | {dt:.1f} | {ips:.2f} | {sp:.2f}x | {failed} | {dig} |")
    same = len({r[-1] for r in rows}) == 1
    print(f"\nidentical outputs across engines: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
