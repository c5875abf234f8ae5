"""Entropy coding of the learned stage's latents with ``constriction`` range coding — and the determinism
that keeps encoder and decoder in lock-step.

What is coded (one range-coder stream, a queue: symbols are decoded in the order they were encoded)::

    ẑ  (N × H/64 × W/64)   per channel c: Categorical over the integers offset[c] .. offset[c]+len[c]-1
                           plus one escape symbol; the table is the factorized prior tabulated once, at
                           export time, in float64 (:func:`tabulate_z`) and stored with the weights
    z overflows            the true value of every escaped ẑ (rare), see :func:`_encode_uint`
    s  (M × H/16 × W/16)   s = round(y' − μ), QuantizedGaussian(mean 0, σ = SCALE_TABLE[idx]) on
                           [-Y_BOUND, Y_BOUND]; ±Y_BOUND means "escape"
    s overflows            |s| − Y_BOUND for every escaped s

(μ, σ) come from the hyper-synthesis h_s(ẑ); the decoder recomputes them from the decoded ẑ and
reconstructs ŷ' = s + μ.

Why the decoder gets exactly the encoder's models (Ballé et al., ICLR 2019, show what happens otherwise:
range decoding turns into garbage after the first differing probability):

- the z tables are *data* (stored integers/float64 in the weights file, covered by its sha256), not
  recomputed from a network on the decoding machine;
- σ only enters the coder through an index into :data:`SCALE_TABLE` (64 log-spaced values 0.11..256, as
  in CompressAI; nearest entry on a log scale), so a tiny float difference changes the model only if σ
  sits on a bin edge;
- h_s runs on CPU in **float64**, single-threaded, oneDNN off, deterministic algorithms on
  (:func:`deterministic_cpu`). Float32 noise (~1e-7 relative) moves σ across a bin edge for about one
  latent in 10⁶ — measured: float32 vs float64 h_s gave 2 different indexes in 2.65 M (6 Kodak images,
  1 and 2 threads), i.e. one broken stream every few images if the two sides differed that much; float64
  noise is ~1e-16, a billion times less;
- the mean μ never enters the entropy coder at all (symbols are residuals coded with mean 0), so a
  differing μ can only shift the reconstruction, never desynchronise the stream.

The synthesis g_s also runs in float64: in float32 the result changed with the torch thread count on this
machine (oneDNN splits reductions by thread), and its ~1e-6 noise flipped the rounding of ~20 pixels per
Kodak image (float32 vs float64), which the reconstruction hash in the ``.inv`` header would refuse. In
float64 the output was bit-identical for 1, 2 and 3 threads, and a pixel flip needs the value to sit
within ~1e-13 of a rounding edge. It costs ~3–5× the float32 synthesis time on CPU (float64 transposed
convolutions dominate the decode) — the price of a decode that is the same everywhere. What float64 cannot rule out (a different libm, a different BLAS on an exotic platform) the
header hash turns into a clear refusal.

Changing anything here that alters the bitstream (tables, bounds, order) needs a new ``.inv`` format
version or codec id (STYLE.md 2).
"""
from __future__ import annotations

import copy
import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import constriction
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import CodecError, ContainerError
from .model import FactorizedPrior, ScaleHyperprior

__all__ = [
    "SCALE_TABLE", "SCALE_EDGES", "Y_BOUND", "Z_TAIL", "ZTables", "tabulate_z", "scale_indexes",
    "deterministic_cpu", "encode_z", "decode_z", "encode_y", "decode_y", "new_encoder", "finish", "new_decoder",
    "LatentCodec", "synthesize_pixels",
]

#: σ quantisation table (CompressAI's ``get_scale_table``): 64 log-spaced values from 0.11 to 256
SCALE_TABLE: np.ndarray = np.exp(np.linspace(math.log(0.11), math.log(256.0), 64))
#: boundaries between neighbouring SCALE_TABLE entries (geometric midpoints; sqrt is correctly rounded)
SCALE_EDGES: np.ndarray = np.sqrt(SCALE_TABLE[:-1] * SCALE_TABLE[1:])
#: residuals s are coded on [-Y_BOUND, Y_BOUND]; ±Y_BOUND announces an overflow coded after the block
Y_BOUND = 255
#: tail mass left out of each channel's ẑ table (both tails together ≈ 2·Z_TAIL, coded as escapes)
Z_TAIL = 1e-9
#: bisection range for the ẑ table edges and the longest table kept per channel
Z_SEARCH = 2.0**12
Z_MAX_SYMBOLS = 4096
#: overflow values are coded as (bit length, bits); anything longer is refused (encoder) or corrupt (decoder)
OVERFLOW_MAX_BITS = 30
_CHUNK = 16

_Model = constriction.stream.model
_Queue = constriction.stream.queue
_Y_FAMILY = _Model.QuantizedGaussian(-Y_BOUND, Y_BOUND)
_NBITS = _Model.Uniform(OVERFLOW_MAX_BITS + 1)
_LOCK = threading.RLock()


def _set_deterministic(mode: bool, *, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms`` without its import of ``torch._inductor.config``.

    The public function first sets the TorchInductor flag, and importing that config pulls in
    ``torch._dynamo``: measured 5–20 s of CPU (idle vs loaded 2-core machine) on the first learned encode or
    decode of every process, with torch 2.13. Nothing here runs under ``torch.compile``, so only the eager
    flag matters; it is set directly, and the public call is the fallback where the private one is gone.
    """
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # pragma: no cover - a torch without the private setter
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


@contextmanager
def deterministic_cpu(threads: int = 1) -> Iterator[None]:
    """Run torch on CPU with a fixed thread count, deterministic algorithms and oneDNN off; restore after.

    Torch's thread count and algorithm flags are process-wide, so the block holds a module lock: two
    threads coding at once take turns instead of changing each other's settings.

    Examples
    --------
    >>> before = torch.get_num_threads()
    >>> with deterministic_cpu():
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    with _LOCK:
        threads_before = torch.get_num_threads()
        det_before = torch.are_deterministic_algorithms_enabled()
        warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
        mkldnn_before = torch._C._get_mkldnn_enabled()
        torch.set_num_threads(threads)
        _set_deterministic(True, warn_only=True)
        # oneDNN picks kernels by CPU ISA; off, float64 convolutions take ATen's plain im2col + GEMM path
        torch._C._set_mkldnn_enabled(False)
        try:
            with torch.no_grad():
                yield
        finally:
            torch._C._set_mkldnn_enabled(mkldnn_before)
            torch.set_num_threads(threads_before)
            _set_deterministic(det_before, warn_only=warn_before)


def scale_indexes(scales: np.ndarray) -> np.ndarray:
    """Index of the :data:`SCALE_TABLE` entry nearest to σ on a log scale (σ ≤ 0.11 → 0, ≥ 256 → 63).

    Bin edges are the geometric midpoints of neighbouring table entries (:data:`SCALE_EDGES`), so the
    index comes from comparisons only. Nearest, not round-up as in CompressAI: rounding σ up cost 7 % of
    the y rate on Kodak (most σ are 0.1–0.5, where a wider Gaussian makes the frequent zero expensive);
    nearest costs 0.1 % over exact σ.

    Examples
    --------
    >>> scale_indexes(np.array([-1.0, 0.11, 0.12, 1.0, 1e6])).tolist()
    [0, 0, 1, 18, 63]
    """
    return np.searchsorted(SCALE_EDGES, np.asarray(scales, dtype=np.float64), side="right").astype(np.int64)


# -- the factorized prior as tables --------------------------------------------------------------------------
@dataclass(frozen=True)
class ZTables:
    """Per-channel probability tables for ẑ.

    ``pmfs[c, :lengths[c]]`` is the mass of the integers ``offsets[c] .. offsets[c] + lengths[c] - 1`` and
    ``pmfs[c, lengths[c]]`` the escape (both tails); the rest of the row is padding.
    """

    offsets: np.ndarray
    lengths: np.ndarray
    pmfs: np.ndarray
    _models: list[Any] = field(default_factory=list, repr=False, compare=False)

    @property
    def channels(self) -> int:
        return int(self.offsets.shape[0])

    def model(self, c: int) -> Any:
        """The constriction ``Categorical`` of channel ``c`` (built once)."""
        if not self._models:
            self._models.extend(
                _Model.Categorical(self.pmfs[i, : int(self.lengths[i]) + 1].astype(np.float64), perfect=False)
                for i in range(self.channels))
        return self._models[c]

    def to_tensors(self) -> dict[str, Tensor]:
        return {"offsets": torch.from_numpy(self.offsets.astype(np.int32)),
                "lengths": torch.from_numpy(self.lengths.astype(np.int32)),
                "pmfs": torch.from_numpy(self.pmfs.astype(np.float64))}

    @classmethod
    def from_tensors(cls, t: dict[str, Tensor]) -> "ZTables":
        offsets = t["offsets"].numpy().astype(np.int64)
        lengths = t["lengths"].numpy().astype(np.int64)
        pmfs = t["pmfs"].numpy().astype(np.float64)
        if not (offsets.shape == lengths.shape and pmfs.ndim == 2 and pmfs.shape[0] == offsets.shape[0]
                and lengths.min() >= 1 and lengths.max() < pmfs.shape[1]):
            raise ValueError("inconsistent ẑ tables")
        return cls(offsets, lengths, pmfs)


@torch.no_grad()
def tabulate_z(prior: FactorizedPrior, tail: float = Z_TAIL) -> ZTables:
    """Tabulate the factorized prior per channel over the integers that hold all but ``2·tail`` of its mass.

    The edges are found by bisection of ``logits_cdf`` (monotone per channel) for CDF = ``tail`` and
    ``1 − tail``; masses use the sign trick of ``FactorizedPrior.likelihood`` so far tails keep their
    precision. All in float64.
    """
    p = copy.deepcopy(prior).double().eval()
    c = p.channels
    target = math.log(tail / (1.0 - tail))

    def solve(t: float) -> Tensor:
        lo = torch.full((c, 1, 1), -Z_SEARCH, dtype=torch.float64)
        hi = torch.full((c, 1, 1), Z_SEARCH, dtype=torch.float64)
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            below = p.logits_cdf(mid) < t
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    lo = torch.floor(solve(target)).flatten().long()
    hi = torch.ceil(solve(-target)).flatten().long()
    hi = torch.minimum(hi, lo + Z_MAX_SYMBOLS - 1)
    lengths = (hi - lo + 1).clamp_min(1)
    grid_lo, n = int(lo.min()), int((hi.max() - lo.min()) + 1)
    v = torch.arange(grid_lo, grid_lo + n, dtype=torch.float64).expand(c, 1, n)
    lower = p.logits_cdf(v - 0.5)
    upper = p.logits_cdf(v + 0.5)
    sign = -torch.sign(lower + upper)
    mass = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).reshape(c, n)
    pmfs = np.zeros((c, int(lengths.max()) + 1), dtype=np.float64)
    for i in range(c):
        start, length = int(lo[i]) - grid_lo, int(lengths[i])
        pmfs[i, :length] = mass[i, start : start + length].numpy()
        below = torch.sigmoid(lower[i, 0, start]).item()
        above = torch.sigmoid(-upper[i, 0, start + length - 1]).item()
        pmfs[i, length] = below + above
    return ZTables(lo.numpy().astype(np.int64), lengths.numpy().astype(np.int64), pmfs)


# -- stream helpers ------------------------------------------------------------------------------------------
def new_encoder() -> Any:
    return _Queue.RangeEncoder()


def finish(encoder: Any) -> bytes:
    """The encoder's words as little-endian bytes, minus the zero high bytes of the last word.

    At least one byte of the last word is kept, so :func:`new_decoder` restores exactly the same words by
    padding to a multiple of 4 (up to 3 bytes saved per file).
    """
    data = encoder.get_compressed().astype("<u4").tobytes()
    keep = len(data)
    floor = max(0, len(data) - 3)
    while keep > floor and data[keep - 1] == 0:
        keep -= 1
    return data[:keep]


def new_decoder(payload: bytes) -> Any:
    data = bytes(payload) + b"\x00" * (-len(payload) % 4)
    return _Queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))


def _encode_uint(encoder: Any, value: int) -> None:
    """Code a non-negative int as its bit length (uniform over 0..30) then the bits below the leading one."""
    value = int(value)
    nbits = value.bit_length()
    if nbits > OVERFLOW_MAX_BITS:
        raise CodecError(f"learned: latent value {value} out of the codable range (< 2**{OVERFLOW_MAX_BITS})")
    encoder.encode(nbits, _NBITS)
    rest, left = value - (1 << (nbits - 1)) if nbits else 0, max(nbits - 1, 0)
    while left > 0:
        k = min(left, _CHUNK)
        left -= k
        encoder.encode((rest >> left) & ((1 << k) - 1), _Model.Uniform(1 << k))


def _decode_uint(decoder: Any) -> int:
    nbits = int(decoder.decode(_NBITS))
    if nbits == 0:
        return 0
    value, left = 1, nbits - 1
    while left > 0:
        k = min(left, _CHUNK)
        left -= k
        value = (value << k) | int(decoder.decode(_Model.Uniform(1 << k)))
    return value


def _zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _unzigzag(u: int) -> int:
    return u // 2 if u % 2 == 0 else -(u + 1) // 2


def encode_z(encoder: Any, z: np.ndarray, tables: ZTables) -> int:
    """Code integer ẑ of shape (C, h, w) channel by channel; returns the number of escapes."""
    c = z.shape[0]
    if c != tables.channels:
        raise CodecError(f"learned: ẑ has {c} channels, tables have {tables.channels}")
    flat = z.reshape(c, -1).astype(np.int64)
    idx = flat - tables.offsets[:, None]
    esc = (idx < 0) | (idx >= tables.lengths[:, None])
    idx = np.where(esc, tables.lengths[:, None], idx).astype(np.int32)
    for ch in range(c):
        encoder.encode(np.ascontiguousarray(idx[ch]), tables.model(ch))
    for v in flat[esc]:  # row-major: channel, then raster position — the decoder's order
        _encode_uint(encoder, _zigzag(int(v)))
    return int(esc.sum())


def decode_z(decoder: Any, tables: ZTables, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`encode_z`: integer ẑ of ``shape`` (C, h, w)."""
    c, h, w = shape
    idx = np.stack([decoder.decode(tables.model(ch), h * w) for ch in range(c)]).astype(np.int64)
    esc = idx == tables.lengths[:, None]
    flat = idx + tables.offsets[:, None]
    if esc.any():
        flat[esc] = [_unzigzag(_decode_uint(decoder)) for _ in range(int(esc.sum()))]
    return flat.reshape(c, h, w)


def encode_y(encoder: Any, s: np.ndarray, idx: np.ndarray) -> int:
    """Code integer residuals ``s`` with σ = SCALE_TABLE[idx] (same shapes); returns the number of escapes."""
    flat = s.reshape(-1).astype(np.int64)
    std = SCALE_TABLE[idx.reshape(-1)]
    esc = np.abs(flat) >= Y_BOUND
    clipped = np.clip(flat, -Y_BOUND, Y_BOUND).astype(np.int32)
    encoder.encode(clipped, _Y_FAMILY, np.zeros_like(std), std)
    for v in np.abs(flat[esc]) - Y_BOUND:
        _encode_uint(encoder, int(v))
    return int(esc.sum())


def decode_y(decoder: Any, idx: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_y`: integer residuals with the shape of ``idx``."""
    std = SCALE_TABLE[idx.reshape(-1)]
    sym = decoder.decode(_Y_FAMILY, np.zeros_like(std), std).astype(np.int64)
    esc = np.abs(sym) == Y_BOUND
    if esc.any():
        extra = np.array([_decode_uint(decoder) for _ in range(int(esc.sum()))], dtype=np.int64)
        sym[esc] = np.sign(sym[esc]) * (Y_BOUND + extra)
    return sym.reshape(idx.shape)


# -- the model-facing codec ----------------------------------------------------------------------------------
class LatentCodec:
    """Pixels ⇄ payload bytes for one :class:`ScaleHyperprior` and its ẑ tables.

    The analysis side (g_a, h_a) runs in float32 with whatever threads torch has — only the encoder runs
    it, and its output is transmitted as integers. Everything the decoder runs (h_s, g_s) runs in float64
    (see the module docstring).

    Examples
    --------
    >>> torch.manual_seed(0) and None
    >>> model = ScaleHyperprior(8, 8).eval()
    >>> codec = LatentCodec(model, tabulate_z(model.prior))
    >>> px = (np.arange(40 * 70 * 3) % 251).astype(np.uint8).reshape(40, 70, 3)
    >>> payload = codec.encode(px, 2)
    >>> out = codec.decode(payload, 2, 40, 70)
    >>> out.shape, out.dtype, np.array_equal(out, codec.decode(payload, 2, 40, 70))
    ((40, 70, 3), dtype('uint8'), True)
    """

    def __init__(self, model: ScaleHyperprior, z_tables: ZTables) -> None:
        self.model = model.eval()
        self.tables = z_tables
        self._h_s = copy.deepcopy(model.h_s).double().eval()
        self._g_s = copy.deepcopy(model.g_s).double().eval()
        self._inv_gain = torch.exp(model.log_inv_gain.detach().double())
        if z_tables.channels != model.N:
            raise CodecError(f"learned: ẑ tables have {z_tables.channels} channels, the model {model.N}")

    @property
    def num_qualities(self) -> int:
        return self.model.num_qualities

    def _check_q(self, q: int) -> None:
        if not 0 <= q < self.num_qualities:
            raise CodecError(f"learned: quality index {q} outside 0..{self.num_qualities - 1}")

    def entropy_parameters(self, z_hat: np.ndarray) -> tuple[Tensor, np.ndarray]:
        """μ (float64 tensor, 1×M×h×w) and scale indexes (int array M×h×w) from integer ẑ (N×h'×w')."""
        with deterministic_cpu(1):
            out = self._h_s(torch.from_numpy(z_hat.astype(np.float64))[None])
            means, scales = out.chunk(2, dim=1)
            idx = scale_indexes(scales[0].numpy())
        return means.contiguous(), idx

    def analysis(self, pixels: np.ndarray, q: int) -> tuple[Tensor, Tensor]:
        """(padded input in [0, 1], gained latent y' = g_a(x)·gain[q]) for uint8 RGB ``pixels`` (H×W×3)."""
        self._check_q(q)
        arr = np.ascontiguousarray(pixels)
        if not arr.flags.writeable:   # the loader's pixels are read-only; torch warns on (and must not share) them
            arr = arr.copy()
        x = torch.from_numpy(arr).permute(2, 0, 1)[None].float().div_(255.0)
        x = _pad64(x)
        with torch.no_grad():
            gain = torch.exp(self.model.log_gain[q])[None, :, None, None]
            y = self.model.g_a(x) * gain
        return x, y

    def encode(self, pixels: np.ndarray, q: int) -> bytes:
        """Payload for uint8 RGB ``pixels`` (H×W×3) at 0-based quality ``q``. Any size: replicate-padded to 64."""
        _, y = self.analysis(pixels, q)
        with torch.no_grad():
            z_hat = torch.round(self.model.h_a(y))[0].numpy().astype(np.int64)
        return self.encode_latents(y, z_hat)

    def encode_latents(self, y: Tensor, z_hat: np.ndarray) -> bytes:
        """Payload for a gained latent ``y`` (1×M×h×w) and integer ``z_hat`` (N×h/4×w/4) — the hook for
        encoders that choose their own latents (:mod:`.refine`); the stream is the same format either way."""
        means, idx = self.entropy_parameters(z_hat)
        s = torch.round(y.detach().double() - means)[0].numpy().astype(np.int64)
        enc = new_encoder()
        encode_z(enc, z_hat, self.tables)
        encode_y(enc, s, idx)
        return finish(enc)

    def decode_latents(self, payload: bytes, height: int, width: int) -> Tensor:
        """ŷ' = s + μ (float64, 1×M×H/16×W/16 of the padded size) from a payload."""
        ph, pw = -(-height // 64) * 64, -(-width // 64) * 64
        try:
            dec = new_decoder(payload)
            z_hat = decode_z(dec, self.tables, (self.model.N, ph // 64, pw // 64))
            return self._decode_y(dec, z_hat)
        except (ValueError, RuntimeError, OverflowError, AssertionError) as exc:
            raise ContainerError(f"learned: payload does not decode ({type(exc).__name__}: {exc})") from None

    def _decode_y(self, dec: Any, z_hat: np.ndarray) -> Tensor:
        """ŷ' from the rest of the stream once ẑ is read (a context model decodes y in its own passes)."""
        means, idx = self.entropy_parameters(z_hat)
        s = decode_y(dec, idx)
        return torch.from_numpy(s.astype(np.float64))[None] + means

    def synthesize(self, y_hat: Tensor, q: int, height: int, width: int) -> np.ndarray:
        """uint8 H×W×3 pixels from ŷ' (float64 synthesis, cropped to ``height × width``)."""
        self._check_q(q)
        with torch.no_grad():
            return synthesize_pixels(self._g_s, y_hat, self._inv_gain[q], height, width)

    def decode(self, payload: bytes, q: int, height: int, width: int) -> np.ndarray:
        """uint8 H×W×3 pixels from a payload written by :meth:`encode`."""
        self._check_q(q)
        return self.synthesize(self.decode_latents(payload, height, width), q, height, width)


def synthesize_pixels(g_s: torch.nn.Module, y_hat: Tensor, inv_gain: Tensor, height: int,
                      width: int) -> np.ndarray:
    """uint8 H×W×3 pixels from ŷ' through ``g_s`` (on whatever device and dtype ``g_s`` and ``y_hat`` share),
    scaled by the quality's inverse gain row, clamped, rounded, cropped to ``height × width``."""
    x_hat = g_s(y_hat * inv_gain[None, :, None, None])
    x_hat = torch.round(x_hat[0, :, :height, :width].clamp(0.0, 1.0) * 255.0)
    return np.ascontiguousarray(x_hat.permute(1, 2, 0).to("cpu", torch.float64).numpy().astype(np.uint8))


def _pad64(x: Tensor) -> Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % 64, (-w) % 64
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
