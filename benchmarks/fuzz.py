"""Fuzz the parsers that read untrusted bytes: the loader, the ``.inv`` container, the TOML policy parser.

Usage::

    python benchmarks/fuzz.py --target loader|container|policy [--seconds 60] [--engine hypothesis|atheris]
                              [--seed 0] [--save tests/fixtures/fuzz]

Each target may only ever raise :class:`~inverity.errors.InverityError` subclasses. Anything else is a
*finding*, and so is an input that takes longer than ``--timeout`` seconds (a hang) or, for the loader, one that
allocates more than its memory budget while the pixel limit is 2**20 pixels (a decompression bomb that slipped
past the header check; measured with ``tracemalloc``, which sees numpy's allocations, and including an
"out of memory" refusal, which means a large allocation was attempted). Findings are written to
``--save/<target>/<sha1>.bin``; ``tests/test_fuzz.py`` replays every file there as a regression case and runs
each target for a few seconds.

Engines. ``hypothesis`` (the default; a test dependency) draws a seed file and applies a random list of
mutations — bit flips, byte overwrites, "interesting" 32-bit values in size fields, insertions, deletions,
truncation, splices — plus, for policies, structurally generated TOML. ``atheris`` (libFuzzer, coverage-guided
over our Python parsers; optional, ``pip install atheris``) starts from the same seeds.

Prints one line per target: executions, executions per second, findings, and each finding's kind and message.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from inverity.errors import InverityError

#: the loader runs with this pixel limit, so its memory budget can be small
LOADER_MAX_PIXELS = 1 << 20
#: worst case for 2**20 pixels: 4 channels × 2 bytes = 8 MiB per copy, a handful of copies, plus the input
LOADER_MEMORY_BUDGET = 96 << 20
DEFAULT_TIMEOUT = 10.0
REPO = Path(__file__).resolve().parents[1]
CRASH_DIR = REPO / "tests" / "fixtures" / "fuzz"


class Finding(Exception):
    """An input the target mishandled: ``kind`` is ``exception``, ``memory`` or ``slow``."""

    def __init__(self, kind: str, message: str, data: bytes) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind, self.message, self.data = kind, message, data


class _Alarm(BaseException):
    """Raised by SIGALRM inside Python code that runs too long (BaseException: no ``except Exception`` eats it)."""


# ---- seeds ------------------------------------------------------------------------------------------------------

def loader_seeds() -> list[bytes]:
    """Small valid files of every format the loader reads (a few hundred bytes to a few KB each)."""
    from PIL import Image as PILImage

    from inverity.image import Image, dicom_bytes, load, to_bytes

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, rng.integers(0, 256, (12, 10, 1), dtype=np.uint8)])
    gray12 = rng.integers(0, 4096, (9, 11, 1), dtype=np.uint16)

    def pil(fmt: str, im: Any, **kw: Any) -> bytes:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return buf.getvalue()

    exif = PILImage.Exif()
    exif[0x0112] = 6
    out = [
        to_bytes(Image(rgb), "png"), to_bytes(Image(gray12, bit_depth=12), "png"), to_bytes(Image(rgba), "tiff"),
        to_bytes(Image(gray12, bit_depth=12), "jpegls"), to_bytes(Image(gray12, bit_depth=12), "j2k"),
        to_bytes(Image(rgb), "jp2"), to_bytes(Image(rgb), "jxl"), to_bytes(Image(rgb), "avif"),
        to_bytes(Image(rgba), "webp"), to_bytes(Image(rgb), "bmp"),
        pil("JPEG", PILImage.fromarray(rgb), quality=80, exif=exif),
        pil("JPEG", PILImage.fromarray(rgb).convert("CMYK")),
        pil("GIF", PILImage.fromarray(rgb).quantize(8)),
        pil("PNG", PILImage.fromarray(rgb).quantize(8), transparency=0),
        pil("WEBP", PILImage.fromarray(rgb), quality=70),
    ]
    try:
        import pydicom.data

        ct = Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm"
        small = load(ct)
        out += [dicom_bytes(small, transfer_syntax="explicit"), dicom_bytes(small)]
    except (ImportError, OSError, InverityError):
        pass
    return out


def container_seeds() -> list[bytes]:
    """The committed learned-stage fixtures and a synthetic stream (the parser does not run the model)."""
    from inverity.container import pack

    header = {"codec_id": "learned", "model": "hp-gain", "model_version": 1, "quality": 3,
              "shape": [64, 96, 3], "dtype": "uint8", "package_version": "0.1.0",
              "weights_sha256": "0123456789abcdef", "recon_sha256": "fedcba9876543210"}
    out = [pack(header, bytes(range(256)) * 2)]
    out += [p.read_bytes() for p in sorted((REPO / "tests" / "fixtures" / "learned").glob("*.inv"))]
    return out


def policy_seeds() -> list[bytes]:
    """The policy files shipped with the package."""
    from inverity.policy import example_policies

    return [Path(p).read_bytes() for p in example_policies().values()]


# ---- targets ----------------------------------------------------------------------------------------------------

def run_loader(data: bytes) -> None:
    from inverity.image import load

    try:
        image = load(data, max_pixels=LOADER_MAX_PIXELS)
    except InverityError as exc:
        if "not enough memory" in str(exc):  # an allocation past the budget was attempted
            raise Finding("memory", str(exc), data) from None
        return
    if image.height * image.width > LOADER_MAX_PIXELS:
        raise Finding("exception", f"returned {image.width}x{image.height}, over the pixel limit", data)


def run_container(data: bytes) -> None:
    from inverity.container import unpack

    try:
        unpack(data)
    except InverityError:
        return


_POLICY_DIR = Path(tempfile.mkdtemp(prefix="inverity-fuzz-policy-"))


def run_policy(data: bytes) -> None:
    """The real entry point, a file path: ``get_policy("x.toml")`` reads, parses and validates it."""
    from inverity.policy import get_policy

    path = _POLICY_DIR / "fuzz.toml"
    path.write_bytes(data)
    try:
        get_policy(str(path))
    except InverityError:
        return


@dataclass
class Target:
    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    memory_budget: int | None = None
    structured: Callable[[Any], bytes] | None = None  # a hypothesis-strategy-driven generator (policy TOML)


# ---- the harness ------------------------------------------------------------------------------------------------

@dataclass
class Stats:
    executions: int = 0
    findings: list[Finding] = field(default_factory=list)


def execute(target: Target, data: bytes, timeout: float = DEFAULT_TIMEOUT, stats: Stats | None = None) -> None:
    """Run ``target`` on ``data``; raise :class:`Finding` on any disallowed outcome."""
    if stats is not None:
        stats.executions += 1
    traced = target.memory_budget is not None
    started_here = traced and not tracemalloc.is_tracing()  # leave tracing as we found it (tests measure too)
    if started_here:
        tracemalloc.start()
    base = 0
    if traced:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
    old = signal.signal(signal.SIGALRM, _raise_alarm) if hasattr(signal, "SIGALRM") else None
    if old is not None:
        signal.setitimer(signal.ITIMER_REAL, timeout)
    start = time.perf_counter()
    try:
        target.run(data)
    except Finding:
        raise
    except _Alarm:
        raise Finding("slow", f"still running after {timeout:.0f} s", data) from None
    except Exception as exc:  # noqa: BLE001 - exactly what the fuzzer is looking for
        raise Finding("exception", f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}", data) from None
    finally:
        if old is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        peak = tracemalloc.get_traced_memory()[1] - base if traced else 0  # the most this input made it allocate
        if started_here:
            tracemalloc.stop()
    elapsed = time.perf_counter() - start
    if elapsed > timeout:
        raise Finding("slow", f"took {elapsed:.1f} s", data)
    if traced:
        if peak > target.memory_budget:  # type: ignore[operator]
            raise Finding("memory", f"peak {peak / 2**20:.0f} MiB > budget {target.memory_budget >> 20} MiB", data)


def _raise_alarm(signum: int, frame: Any) -> None:
    raise _Alarm()


#: values that break size arithmetic when written over a length or dimension field
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def mutate(draw: Callable[[Any], Any], st: Any, seeds: list[bytes]) -> bytes:
    """A seed with 1–8 random mutations (hypothesis draws every choice, so findings shrink)."""
    buf = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        n = len(buf)
        op = draw(st.sampled_from(("flip", "byte", "int", "insert", "delete", "truncate", "splice", "header")))
        pos = draw(st.integers(0, max(n - 1, 0)))
        if op == "flip" and n:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and n:
            buf[pos] = draw(st.integers(0, 255))
        elif op == "int":
            value = draw(st.sampled_from(INTERESTING))
            width, order = draw(st.sampled_from((2, 4))), draw(st.sampled_from(("big", "little")))
            buf[pos : pos + width] = (value & ((1 << 8 * width) - 1)).to_bytes(width, order)
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del buf[pos : pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del buf[pos:]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            a = draw(st.integers(0, max(len(other) - 1, 0)))
            buf[pos:] = other[a:]
        elif op == "header":  # most parsing happens in the first few hundred bytes
            start = draw(st.integers(0, min(n, 400)))
            chunk = draw(st.binary(min_size=1, max_size=8))
            buf[start : start + len(chunk)] = chunk
    return bytes(buf)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string literal is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(type(value))


def policy_document(draw: Callable[[Any], Any], st: Any) -> bytes:
    """A structurally plausible policy: known and unknown keys with values of every TOML type, a floors table."""
    from inverity.policy import _TOML_KEYS, BUILTIN_POLICIES
    from inverity.verify import Floors

    special = st.sampled_from([0, 1, -1, 2**63 - 1, -2**63, 0.5, -0.0, 1e308, math.nan, math.inf, -math.inf, True,
                               False, "", "x", "png", "jpeg", "learned", "cpu", "gpu", *BUILTIN_POLICIES])
    scalar = st.one_of(special, special, st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(),
                       st.text(max_size=12))
    value = st.one_of(scalar, scalar, st.lists(scalar, max_size=4))
    # mostly known keys, so documents get past the unknown-key check into the validation of each value
    keys = st.sampled_from([k for k in _TOML_KEYS if k != "floors"] + ["zz_unknown"])
    doc = draw(st.dictionaries(keys, value, max_size=8))
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in doc.items()]
    if draw(st.booleans()):
        floor_keys = st.sampled_from(sorted(Floors.__dataclass_fields__) + ["zz_unknown"])
        floors = draw(st.dictionaries(floor_keys, value, max_size=6))
        lines.append("[floors]")
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in floors.items()]
    return "\n".join(lines).encode()


TARGETS: dict[str, Target] = {
    "loader": Target("loader", run_loader, loader_seeds, memory_budget=LOADER_MEMORY_BUDGET),
    "container": Target("container", run_container, container_seeds),
    "policy": Target("policy", run_policy, policy_seeds, structured=policy_document),
}


def fuzz_hypothesis(target: Target, seconds: float, seed: int = 0, timeout: float = DEFAULT_TIMEOUT,
                    max_examples: int = 200, batches: int | None = None) -> Stats:
    """Batches of ``max_examples`` hypothesis examples, each batch with its own seed, until ``seconds`` pass (or,
    with ``batches``, after that many batches if sooner: a bounded smoke run).
    A batch that finds something shrinks it; the shrunk input is recorded and the next batch starts."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hyp_seed
    from hypothesis import strategies as st

    seeds = target.seeds()
    stats = Stats()
    deadline = time.monotonic() + seconds

    @st.composite
    def inputs(draw: Callable[[Any], Any]) -> bytes:
        if target.structured is not None and draw(st.booleans()):
            return target.structured(draw, st)
        return mutate(draw, st, seeds)

    last: list[Finding] = []

    def check(data: bytes) -> None:
        if time.monotonic() > deadline:
            return  # out of time: finish the batch quickly
        try:
            execute(target, data, timeout, stats)
        except Finding as finding:
            last[:] = [finding]
            raise

    tracing = target.memory_budget is not None and not tracemalloc.is_tracing()
    if tracing:  # once for the whole run: starting it per input would cost more than the input
        tracemalloc.start()
    try:
        batch = 0
        while time.monotonic() < deadline and (batches is None or batch < batches):
            test = settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
                            suppress_health_check=list(HealthCheck), report_multiple_bugs=False)(given(inputs())(check))
            try:
                hyp_seed(seed * 100_003 + batch)(test)()
            except Finding:
                if last and all(f.data != last[0].data for f in stats.findings):
                    stats.findings.append(last[0])
            batch += 1
    finally:
        if tracing:
            tracemalloc.stop()
    return stats


def fuzz_atheris(target: Target, seconds: float, timeout: float = DEFAULT_TIMEOUT) -> Stats:  # pragma: no cover
    """libFuzzer via atheris, coverage-guided over inverity's Python code; stops at the first finding."""
    import atheris

    corpus = Path(tempfile.mkdtemp(prefix=f"inverity-fuzz-{target.name}-"))
    for k, data in enumerate(target.seeds()):
        (corpus / f"seed{k}").write_bytes(data)
    for data in target.seeds():  # import every module the target reaches, then instrument what is loaded
        try:
            target.run(data)
        except Finding:
            pass
    atheris.instrument_all()  # inverity is imported by this script already, so instrument_imports() is too late
    stats = Stats()

    def one(data: bytes) -> None:
        try:
            execute(target, data, timeout, stats)
        except Finding as finding:
            stats.findings.append(finding)
            _save(finding, target.name, CRASH_DIR)
            raise

    atheris.Setup([sys.argv[0], f"-max_total_time={int(seconds)}", f"-timeout={int(timeout)}", "-rss_limit_mb=4096",
                   str(corpus)], one)
    try:
        atheris.Fuzz()
    except SystemExit:
        pass
    return stats


def _save(finding: Finding, target: str, folder: Path) -> Path:
    path = folder / target / f"{hashlib.sha1(finding.data).hexdigest()[:16]}.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(finding.data)
    return path


def regression_inputs(target: str, folder: Path = CRASH_DIR) -> list[Path]:
    """Saved findings of ``target`` (replayed by ``tests/test_fuzz.py``)."""
    return sorted((folder / target).glob("*.bin"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=sorted(TARGETS), action="append",
                    help="what to fuzz (repeatable; default: all three)")
    ap.add_argument("--seconds", type=float, default=60.0, help="time budget per target")
    ap.add_argument("--engine", choices=("hypothesis", "atheris"), default="hypothesis")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds before an input counts as a hang")
    ap.add_argument("--save", type=Path, default=CRASH_DIR, help="folder for findings (<folder>/<target>/*.bin)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    found = 0
    for name in args.target or sorted(TARGETS):
        target = TARGETS[name]
        start = time.monotonic()
        if args.engine == "atheris":
            stats = fuzz_atheris(target, args.seconds, args.timeout)
        else:
            stats = fuzz_hypothesis(target, args.seconds, args.seed, args.timeout)
        took = time.monotonic() - start
        print(f"{name}: {stats.executions} executions in {took:.0f} s ({stats.executions / max(took, 1e-9):.0f}/s), "
              f"{len(stats.findings)} finding(s)")
        for finding in stats.findings:
            path = _save(finding, name, args.save)
            shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            print(f"  {finding.kind}: {finding.message} -> {shown}")
        found += len(stats.findings)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
