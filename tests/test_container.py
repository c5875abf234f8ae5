"""The ``.inv`` container: layout, size, and a distinct one-line refusal for every kind of damage — including
every truncation length, a bit flip at every byte, and fuzzed input that must never raise anything else."""
from __future__ import annotations

import doctest
import json
import struct

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inverity.container as container
from inverity.container import FORMAT_VERSION, HEADER_KEYS, MAGIC, pack, unpack
from inverity.errors import ContainerError
from inverity.formats import sniff

HEADER = {"codec_id": "learned", "model": "hp-gain", "model_version": 1, "quality": 3, "shape": [512, 768, 3],
          "dtype": "uint8", "package_version": "0.1.0", "weights_sha256": "0123456789abcdef" * 4,
          "recon_sha256": "fedcba9876543210" * 4}
PAYLOAD = bytes(range(256)) * 3


@pytest.fixture(scope="module")
def blob() -> bytes:
    return pack(HEADER, PAYLOAD)


def _recrc(body: bytes) -> bytes:
    return body + struct.pack(">I", crc32c.crc32c(body))


def test_round_trip_and_layout(blob: bytes) -> None:
    header, payload = unpack(blob)
    assert payload == PAYLOAD
    assert header == {**HEADER, "weights_sha256": "0123456789abcdef", "recon_sha256": "fedcba9876543210"}
    assert blob[:4] == MAGIC and blob[4] == FORMAT_VERSION and sniff(blob) == "inv"
    assert blob[5:13].hex() == "0123456789abcdef" and blob[13:21].hex() == "fedcba9876543210"
    assert struct.unpack(">I", blob[-4:])[0] == crc32c.crc32c(blob[:-4])
    body = json.loads(blob[blob.index(b"{") : blob.index(b"}") + 1])
    assert list(body) == list(HEADER_KEYS)  # keys in the frozen table's order, not the caller's dict order


def test_overhead_is_small(blob: bytes) -> None:
    assert len(blob) - len(PAYLOAD) == container.overhead(HEADER, len(PAYLOAD)) <= 120
    big = pack(HEADER, b"\0" * 100_000)
    assert len(big) - 100_000 <= 122  # a 3-byte payload length


def test_header_key_order_does_not_depend_on_dict_order() -> None:
    reordered = dict(reversed(list(HEADER.items())))
    assert pack(reordered, PAYLOAD) == pack(HEADER, PAYLOAD)


@pytest.mark.parametrize("change, match", [
    ({"quality": "3"}, "must be an int"),
    ({"model": 5}, "must be a str"),
    ({"weights_sha256": "xyz"}, "is not hex"),
    ({"recon_sha256": "abcd"}, "at least 16 hex digits"),
    ({"extra": 1}, "unknown"),
])
def test_pack_validates(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pack({**HEADER, **change}, PAYLOAD)
    with pytest.raises(ValueError, match="missing"):
        pack({k: v for k, v in HEADER.items() if k != "dtype"}, PAYLOAD)


def test_bad_magic(blob: bytes) -> None:
    for bad in (b"PNG1" + blob[4:], b"\x89PNG\r\n\x1a\n", b"X"):
        with pytest.raises(ContainerError, match=r"^not an \.inv stream: bad magic"):
            unpack(bad)


def test_unsupported_version(blob: bytes) -> None:
    for v in (0, 2, 255):
        with pytest.raises(ContainerError, match=rf"^unsupported \.inv format version {v} \(this inverity reads "
                                                 rf"version {FORMAT_VERSION}\)$"):
            unpack(blob[:4] + bytes([v]) + blob[5:])


def test_every_truncation_is_reported_as_truncated(blob: bytes) -> None:
    for n in range(len(blob)):
        with pytest.raises(ContainerError, match=r"^\.inv stream truncated"):
            unpack(blob[:n])


def test_trailing_bytes(blob: bytes) -> None:
    with pytest.raises(ContainerError, match="3 unexpected bytes after the declared end"):
        unpack(blob + b"abc")


def test_bit_flip_at_every_byte_is_refused(blob: bytes) -> None:
    lengths = range(21, blob.index(b"{"))  # the two varints
    for i in range(len(blob)):
        for bit in (0x01, 0x80):
            bad = bytearray(blob)
            bad[i] ^= bit
            with pytest.raises(ContainerError) as exc:
                unpack(bytes(bad))
            msg = str(exc.value)
            if i < 4:
                assert msg.startswith("not an .inv stream: bad magic"), (i, msg)
            elif i == 4:
                assert msg.startswith("unsupported .inv format version"), (i, msg)
            elif i in lengths:
                assert "truncated" in msg or "unexpected bytes" in msg or "checksum" in msg, (i, msg)
            else:
                assert msg.startswith(".inv checksum mismatch (CRC32C stored"), (i, msg)
                assert msg.endswith("file is corrupted")


def test_header_faults_behind_a_valid_crc(blob: bytes) -> None:
    start, end = blob.index(b"{"), blob.index(b"}") + 1
    body = json.loads(blob[start:end])

    def with_body(new: bytes) -> bytes:
        prefix = blob[:21] + container._varint(len(new)) + container._varint(len(PAYLOAD))
        return _recrc(prefix + new + PAYLOAD)

    with pytest.raises(ContainerError, match=r"^\.inv header is not valid JSON$"):
        unpack(with_body(b"{nope"))
    with pytest.raises(ContainerError, match="header keys .* do not match format version 1"):
        unpack(with_body(json.dumps({**body, "z": 1}).encode()))
    with pytest.raises(ContainerError, match="header keys"):
        unpack(with_body(b"[1, 2]"))
    with pytest.raises(ContainerError, match="field 'quality' has the wrong type"):
        unpack(with_body(json.dumps({**body, "q": "3"}).encode()))
    with pytest.raises(ContainerError, match="field 'quality' has the wrong type"):
        unpack(with_body(json.dumps({**body, "q": True}).encode()))


def test_oversized_varint_refused(blob: bytes) -> None:
    with pytest.raises(ContainerError, match="not a valid varint|truncated"):
        unpack(blob[:21] + b"\xff" * 8 + b"\x01")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_only_container_errors(data: bytes) -> None:
    with pytest.raises(ContainerError):
        unpack(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
       st.integers(0, 10_000))
def test_fuzz_mutations_only_container_errors(flips: list[tuple[int, int]], cut: int) -> None:
    blob = pack(HEADER, PAYLOAD)
    bad = bytearray(blob)
    for pos, val in flips:
        bad[pos % len(bad)] ^= val
    bad = bytes(bad[: max(1, len(bad) - cut % 50)])
    try:
        unpack(bad)
    except ContainerError:
        return
    assert bad == blob  # only the untouched file may pass (flips can cancel out)


def test_doctests() -> None:
    result = doctest.testmod(container)
    assert result.failed == 0 and result.attempted > 0
