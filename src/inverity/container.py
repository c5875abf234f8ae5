"""The ``.inv`` container: how a learned-stage stream is framed, identified and checked.

A ``.inv`` file is small by design (the rate of the learned codec is the size of the whole file), and every
refusal has its own one-line message, so a decoder never returns a picture it cannot vouch for.

Layout (format version 1; all multi-byte integers big-endian)::

    offset  size  field
    0       4     magic  b"INV1"
    4       1     format version (1)
    5       8     weights sha256, first 8 bytes (64 bits) of the model file's digest
    13      8     reconstruction sha256, first 8 bytes of sha256(decoded uint8 pixels, C order)
    21      v     header length  (unsigned LEB128 varint, 1-2 bytes)
    21+v    v'    payload length (unsigned LEB128 varint)
    ...     n     header: compact UTF-8 JSON, keys from :data:`HEADER_KEYS`, written in table order
    ...     m     payload (the entropy-coded stream, see ``inverity.stages.learned.entropy``)
    -4      4     CRC32C of every byte before it

For a 768×512 Kodak image with model ``hp-gain`` the overhead is 109–110 bytes (``tests/test_container.py``
pins the bound at 120): 4 + 1 + 16 + 3–4 bytes of fixed fields, 81 bytes of JSON, 4 bytes of CRC — about
0.002 bpp, 1–2 % of the file at the lowest quality.

Why 64-bit digests are enough. Both digests guard against *accidents* — a decoder running different weights,
or a platform whose arithmetic produced a different picture — not against forgery: anyone who can edit the
file can also recompute the digest and the CRC, so a longer digest buys no security. Against accidents,
a wrong picture passes the reconstruction check with probability 2**-64, and two distinct weight files
share a 64-bit prefix with probability ~k**2 / 2**65 for k model versions (birthday bound) — negligible
either way. The full weights sha256 is still checked against the registry each time the weights are loaded
(``zoo.load_model``). Storing them as raw bytes instead of hex inside the JSON saves 28 bytes per file.

The payload length is stored so that a truncated file is reported as *truncated* (with both lengths)
instead of as a checksum mismatch.

Header keys are an explicit frozen table (STYLE.md 2): a short key is never reused for another meaning, and
any change to what a field means needs a new format version.
"""
from __future__ import annotations

import json
import struct
from typing import Any

import crc32c

from .errors import ContainerError

__all__ = ["MAGIC", "FORMAT_VERSION", "HEADER_KEYS", "DIGEST_BYTES", "pack", "unpack", "overhead"]

MAGIC = b"INV1"
FORMAT_VERSION = 1
#: bytes of each sha256 digest kept in the fixed part (see the module docstring for why 8 suffice)
DIGEST_BYTES = 8

#: JSON key -> (header field name, type). Frozen: add rows, never reuse or repurpose a key.
HEADER_KEYS: dict[str, tuple[str, type]] = {
    "c": ("codec_id", str),          # stage that wrote the stream ("learned")
    "m": ("model", str),             # model name in the zoo
    "v": ("model_version", int),     # model version (bumped whenever the weights change)
    "q": ("quality", int),           # 1-based quality index
    "s": ("shape", list),            # [height, width, channels] of the decoded image
    "d": ("dtype", str),             # numpy dtype name of the decoded pixels, e.g. "uint8"
    "p": ("package_version", str),   # inverity version that wrote the file (informational)
}
#: header fields held in the fixed binary part, as lowercase hex strings of DIGEST_BYTES bytes
_DIGEST_FIELDS = ("weights_sha256", "recon_sha256")
_FIELD_TO_KEY = {name: key for key, (name, _t) in HEADER_KEYS.items()}
_FIXED = len(MAGIC) + 1 + 2 * DIGEST_BYTES
_CRC = 4


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(data: bytes, pos: int, total: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ContainerError(f".inv stream truncated: {total} bytes end inside the length fields")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 35:
            raise ContainerError(".inv stream corrupted: length field is not a valid varint")


def _digest_bytes(field: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"header field {field!r} must be a hex string, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value[: 2 * DIGEST_BYTES])
    except ValueError:
        raise ValueError(f"header field {field!r} is not hex: {value!r}") from None
    if len(raw) != DIGEST_BYTES:
        raise ValueError(f"header field {field!r} needs at least {2 * DIGEST_BYTES} hex digits")
    return raw


def pack(header: dict[str, Any], payload: bytes) -> bytes:
    """Frame ``payload`` with ``header`` into ``.inv`` bytes.

    ``header`` uses the long field names: ``weights_sha256`` and ``recon_sha256`` (hex; only the first
    16 digits are stored) plus the fields of :data:`HEADER_KEYS`. All fields are required.

    Examples
    --------
    >>> h = {"codec_id": "learned", "model": "m", "model_version": 1, "quality": 2, "shape": [4, 6, 3],
    ...      "dtype": "uint8", "package_version": "0.1.0", "weights_sha256": "ab" * 32, "recon_sha256": "cd" * 32}
    >>> blob = pack(h, b"payload")
    >>> blob[:4], len(blob) - len(b"payload")
    (b'INV1', 98)
    >>> back, payload = unpack(blob)
    >>> payload, back["quality"], back["recon_sha256"]
    (b'payload', 2, 'cdcdcdcdcdcdcdcd')
    """
    fields = set(header)
    expected = set(_FIELD_TO_KEY) | set(_DIGEST_FIELDS)
    if fields != expected:
        raise ValueError(f"header fields: missing {sorted(expected - fields)}, unknown {sorted(fields - expected)}")
    obj: dict[str, Any] = {}
    for key, (name, typ) in HEADER_KEYS.items():  # table order, never dict order
        value = header[name]
        if typ is int and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"header field {name!r} must be an int, got {value!r}")
        if typ is str and not isinstance(value, str):
            raise ValueError(f"header field {name!r} must be a str, got {value!r}")
        if typ is list:
            value = [int(v) for v in value]
        obj[key] = value
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    payload = bytes(payload)
    head = (MAGIC + bytes([FORMAT_VERSION]) + _digest_bytes("weights_sha256", header["weights_sha256"])
            + _digest_bytes("recon_sha256", header["recon_sha256"]) + _varint(len(body)) + _varint(len(payload)))
    framed = head + body + payload
    return framed + struct.pack(">I", crc32c.crc32c(framed))


def unpack(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Check and split ``.inv`` bytes into ``(header, payload)``; raise :class:`ContainerError` on any fault.

    Checks, in order: magic, format version, declared lengths (truncated / trailing bytes), CRC32C, header
    JSON and its keys. The model, weights and reconstruction checks happen in the learned stage, which knows
    the zoo.
    """
    data = bytes(data)
    n = len(data)
    if data[:4] != MAGIC[: min(4, n)]:
        raise ContainerError(f"not an .inv stream: bad magic {data[:4]!r} (expected {MAGIC!r})")
    if n < len(MAGIC) + 1:
        raise ContainerError(f".inv stream truncated: only {n} bytes")
    version = data[4]
    if version != FORMAT_VERSION:
        raise ContainerError(
            f"unsupported .inv format version {version} (this inverity reads version {FORMAT_VERSION})")
    if n < _FIXED:
        raise ContainerError(f".inv stream truncated: only {n} bytes")
    header_len, pos = _read_varint(data, _FIXED, n)
    payload_len, pos = _read_varint(data, pos, n)
    total = pos + header_len + payload_len + _CRC
    if n < total:
        raise ContainerError(f".inv stream truncated: {n} bytes, the header declares {total}")
    if n > total:
        raise ContainerError(
            f".inv stream corrupted: {n - total} unexpected bytes after the declared end ({total} bytes)")
    (stored,) = struct.unpack(">I", data[-_CRC:])
    actual = crc32c.crc32c(data[:-_CRC])
    if stored != actual:
        raise ContainerError(
            f".inv checksum mismatch (CRC32C stored {stored:08x}, computed {actual:08x}): file is corrupted")
    body = data[pos : pos + header_len]
    try:
        obj = json.loads(body.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ContainerError(".inv header is not valid JSON") from None
    if not isinstance(obj, dict) or set(obj) != set(HEADER_KEYS):
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ContainerError(
            f".inv header keys {got} do not match format version {FORMAT_VERSION} {sorted(HEADER_KEYS)}")
    header: dict[str, Any] = {}
    for key, (name, typ) in HEADER_KEYS.items():
        value = obj[key]
        if not isinstance(value, typ) or isinstance(value, bool):
            raise ContainerError(f".inv header field {name!r} has the wrong type: {value!r}")
        header[name] = value
    header["weights_sha256"] = data[5 : 5 + DIGEST_BYTES].hex()
    header["recon_sha256"] = data[5 + DIGEST_BYTES : _FIXED].hex()
    return header, data[pos + header_len : pos + header_len + payload_len]


def overhead(header: dict[str, Any], payload_len: int = 0) -> int:
    """Bytes a file with this header spends on everything but a payload of ``payload_len`` bytes."""
    return len(pack(header, b"")) - 1 + len(_varint(payload_len))
