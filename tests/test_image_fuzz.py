"""Fuzz target for the loader (STYLE.md 7): whatever the bytes, ``load`` returns an Image or raises InputError.

Seeds are small valid files of every supported format; hypothesis truncates them, flips bits, overwrites
bytes and splices in noise. Bounded (200 examples per property, small images, ``max_pixels`` 2**20) so the file
runs in seconds.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom.data
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.fuzz import loader_seeds
from inverity.errors import InputError
from inverity.image import load

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LIMIT = 1 << 20  # a flipped header bit must not turn into a gigapixel allocation during the test


@lru_cache(maxsize=1)
def seeds() -> tuple[bytes, ...]:
    """The fuzz harness's loader seeds (benchmarks/fuzz.py) plus two compressed DICOM files pydicom ships."""
    out = loader_seeds()
    dicom = Path(pydicom.data.__file__).parent / "test_files"
    for name in ("MR_small_jpeg_ls_lossless.dcm", "SC_rgb_rle.dcm"):
        if (dicom / name).is_file():
            out.append((dicom / name).read_bytes())
    return tuple(out)


def check(data: bytes) -> None:
    try:
        img = load(data, max_pixels=LIMIT)
    except InputError as exc:
        message = str(exc)
        assert message.startswith("<bytes>: ") and "\n" not in message
        return
    assert img.pixels.ndim == 3 and img.pixels.dtype in (np.uint8, np.uint16)
    assert img.height * img.width <= LIMIT


def test_seeds_are_valid() -> None:
    for data in seeds():
        assert load(data).height > 0


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    check(data)


MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\xff\xd8\xff\xf7", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM",
          b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51",
          b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\x00\x00\x00\x1cftypavif", b"\x00" * 128 + b"DICM"]


@FUZZ
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_magic_then_noise(magic: bytes, tail: bytes) -> None:
    check(magic + tail)


@FUZZ
@given(st.data())
def test_truncations(data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(seeds()))
    check(seed[: data.draw(st.integers(0, len(seed) - 1))])


@FUZZ
@given(st.data())
def test_bit_flips_and_overwrites(data: st.DataObject) -> None:
    buf = bytearray(data.draw(st.sampled_from(seeds())))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        if data.draw(st.booleans()):
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        else:
            buf[pos] = data.draw(st.integers(0, 255))
    check(bytes(buf))


@FUZZ
@given(st.data())
def test_header_region_mutations(data: st.DataObject) -> None:
    """Most parsing happens in the first few hundred bytes: concentrate damage there, including size fields."""
    buf = bytearray(data.draw(st.sampled_from(seeds())))
    end = min(len(buf), 400)
    start = data.draw(st.integers(0, end - 1))
    chunk = data.draw(st.binary(min_size=1, max_size=8))
    buf[start : start + len(chunk)] = chunk
    check(bytes(buf))


@pytest.mark.parametrize("index", range(16))
def test_each_seed_truncated_everywhere_in_header(index: int) -> None:
    if index >= len(seeds()):
        pytest.skip("fewer seeds")
    seed = seeds()[index]
    for cut in range(0, min(len(seed), 300), 7):
        check(seed[:cut])
