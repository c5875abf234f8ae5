"""The format registry: one definition per image format, and the tables derived from it (STYLE.md 11).

A :class:`Format` holds everything inverity knows about a format: its name (as :func:`sniff` reports it),
file extensions (the first is the default), media type, magic bytes, the name a policy's ``accept`` list uses
for it, whether every browser decodes it, and the DICOM transfer syntax it is. Every other table (the sniff
magic, the output extension by format, the media types the server offers, the policy's accept names and aliases,
the CLI's known extensions) is a *view* computed here from :data:`REGISTRY`, never written a second time.

A stage names the format it writes once, in ``Capabilities(format=...)``; :func:`by_stage` finds it. The
functions that read and write a format's files (``image.load``'s decoder, ``image.save``'s writer) are named
here too, as ``"module:function"`` references imported on first use (as imageio's ``config/extensions.py`` names
its plugins), so the registry stays importable without any codec.

Sniffing is by content, never by extension: ``(name, offset, magic)`` rows checked in order, after three probes
that a fixed prefix cannot express (DICOM's preamble, RIFF/WebP, the ISO-BMFF brands of AVIF/HEIF).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, TypeVar

from .errors import UnknownIdError

__all__ = ["Format", "REGISTRY", "SAME_AS_INPUT", "register_format", "get_format", "list_formats",
           "format_for_extension", "format_for_media_type", "by_stage", "sniff", "MAGIC",
           "default_extensions", "loadable_formats", "walked_formats", "served_media_types", "browser_formats",
           "accept_aliases", "known_extensions", "universal_media_types", "stage_formats", "stage_client_formats",
           "dicom_transfer_syntaxes", "LazyView", "resolve", "writable_formats", "save_extensions", "titles",
           "walked_extensions"]

#: the ``format`` of a stage that writes the input's own format (``original``)
SAME_AS_INPUT = "*"


@dataclass(frozen=True)
class Format:
    """One image format, defined once.

    Parameters
    ----------
    name
        The name :func:`sniff` reports (``jpeg``, ``jpegls``, ``jp2``, ...).
    extensions
        File extensions with the dot; the first is the one inverity writes.
    media_type
        The media type it is served as, or ``None`` where none is registered.
    magic
        ``(offset, bytes)`` prefixes, each of which identifies the format (checked in registry order).
    client
        The name a policy's ``accept`` list uses (``jls`` for JPEG-LS); defaults to ``name``.
    aliases
        Further spellings an ``accept`` list may use for ``client`` (besides ``name`` and ``media_type``).
    browser_safe
        Every major browser decodes it (delivery's default ``accept``).
    universal
        Reached by a client's ``image/*`` or ``*/*`` (RFC 9110 wildcard), not only by its exact media type.
    served
        Position in the server's rendition order (the tie-break between equal sizes), or ``None``: not served.
    dicom_transfer_syntax
        The lossless DICOM transfer syntax this bitstream is (``image.dicom_bytes``), or ``None``.
    title
        What messages call it (``JPEG XL``); defaults to ``name`` in capitals.
    decoder
        ``"module:function"``: how the pixel door (``image.load``) decodes it, as
        ``function(data, max_pixels) -> (pixels, bit_depth, metadata)``; ``None`` with ``pillow`` set: Pillow's
        plugin decodes it (``image._load.decode_pillow``).
    pillow
        ``(plugin module, ImageFile class)`` of the Pillow plugin that parses it, or ``None``.
    writer
        ``"module:function"``: how ``image.save``/``image.to_bytes`` write it, as ``function(image) -> bytes``
        (lossless except JPEG); ``None``: not written by ``save``.
    walked
        A directory walk picks such files up as images.
    claims_extensions
        An output named with one of ``extensions`` is refused for a stage that writes another format (the CLI's
        extension check). ``False`` for the JPEG 2000 codestream: ``jpeg2000`` with ``htj2k`` writes one, and a
        ``.j2k`` name for it was never refused.
    """

    name: str
    extensions: tuple[str, ...]
    media_type: str | None = None
    magic: tuple[tuple[int, bytes], ...] = ()
    client: str = ""
    aliases: tuple[str, ...] = ()
    browser_safe: bool = False
    universal: bool = False
    served: int | None = None
    dicom_transfer_syntax: str | None = None
    title: str = ""
    decoder: str | None = None
    pillow: tuple[str, str] | None = None
    writer: str | None = None
    walked: bool = True
    claims_extensions: bool = True

    def __post_init__(self) -> None:
        if not self.client:
            object.__setattr__(self, "client", self.name)
        if not self.title:
            object.__setattr__(self, "title", self.name.upper())

    @property
    def loadable(self) -> bool:
        """The pixel door (``image.load``) decodes it: it names a decoder, or a Pillow plugin that reads it."""
        return self.decoder is not None or self.pillow is not None

    @property
    def extension(self) -> str:
        """The extension inverity writes for this format (the first of ``extensions``)."""
        return self.extensions[0]


#: every format, in sniff order (order matters only where one magic prefixes another)
REGISTRY: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    """Add ``fmt`` to the registry (once per name)."""
    if fmt.name in REGISTRY:
        raise ValueError(f"format {fmt.name!r} registered twice")
    REGISTRY[fmt.name] = fmt
    return fmt


#: where the pixel door's decoders and ``save``'s writers live (``"module:function"`` references below)
_LOAD, _PNG, _DICOM, _SAVE = ("inverity.image._load", "inverity.image._png", "inverity.image._dicom",
                              "inverity.image._save")

for _f in (
    Format("inv", (".inv",), "application/x-inverity", ((0, b"INV1"),), served=5, walked=False,
           title="inverity container", decoder=f"{_LOAD}:decode_inv"),
    Format("png", (".png",), "image/png", ((0, b"\x89PNG\r\n\x1a\n"),), browser_safe=True, universal=True,
           served=4, decoder=f"{_PNG}:decode_png", writer=f"{_SAVE}:write_png"),
    Format("jpeg", (".jpg", ".jpeg"), "image/jpeg", ((0, b"\xff\xd8\xff"),), aliases=("jpg", "image/jpg"),
           browser_safe=True, universal=True, served=3, decoder=f"{_LOAD}:decode_jpeg",
           pillow=("JpegImagePlugin", "JpegImageFile"), writer=f"{_SAVE}:write_jpeg"),
    Format("gif", (".gif",), "image/gif", ((0, b"GIF87a"), (0, b"GIF89a")), universal=True,
           pillow=("GifImagePlugin", "GifImageFile")),
    Format("tiff", (".tif", ".tiff"), "image/tiff",
           ((0, b"II*\x00"), (0, b"MM\x00*"), (0, b"II+\x00"), (0, b"MM\x00+")),   # the last two: BigTIFF
           decoder=f"{_LOAD}:decode_tiff", pillow=("TiffImagePlugin", "TiffImageFile"), writer=f"{_SAVE}:write_tiff"),
    Format("bmp", (".bmp",), "image/bmp", ((0, b"BM"),), pillow=("BmpImagePlugin", "BmpImageFile"),
           writer=f"{_SAVE}:write_bmp"),
    Format("jxl", (".jxl",), "image/jxl",
           ((0, b"\xff\x0a"), (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n")), served=1,   # codestream, container
           title="JPEG XL", decoder=f"{_LOAD}:decode_jxl", writer=f"{_SAVE}:write_jxl"),
    Format("jp2", (".jp2",), "image/jp2", ((0, b"\x00\x00\x00\x0cjP  \r\n\x87\n"),), aliases=("jpeg2000",),
           dicom_transfer_syntax="jpeg2000", title="JPEG 2000", decoder=f"{_LOAD}:decode_j2k",
           writer=f"{_SAVE}:write_jp2"),
    Format("j2k", (".j2k", ".j2c"), None, ((0, b"\xff\x4f\xff\x51"),), client="jp2",
           claims_extensions=False, title="JPEG 2000", decoder=f"{_LOAD}:decode_j2k",
           writer=f"{_SAVE}:write_j2k"),  # JPEG 2000/HTJ2K codestream
    Format("dicom", (".dcm",), "application/dicom", ((128, b"DICM"),), decoder=f"{_DICOM}:decode_dicom",
           writer=f"{_SAVE}:write_dicom"),
    # no fixed prefix: found by the probes in sniff()
    Format("jpegls", (".jls",), "image/jls", client="jls", aliases=("jpeg-ls",), dicom_transfer_syntax="jpegls",
           title="JPEG-LS", decoder=f"{_LOAD}:decode_jpegls", writer=f"{_SAVE}:write_jpegls"),
    Format("webp", (".webp",), "image/webp", browser_safe=True, served=2, title="WebP",
           pillow=("WebPImagePlugin", "WebPImageFile"), writer=f"{_SAVE}:write_webp"),
    Format("avif", (".avif",), "image/avif", browser_safe=True, served=0, decoder=f"{_LOAD}:decode_avif",
           pillow=("AvifImagePlugin", "AvifImageFile"), writer=f"{_SAVE}:write_avif"),
    Format("heif", (".heic", ".heif"), "image/heif", walked=False),   # recognised, refused: no decoder
):
    register_format(_f)


def get_format(name: str) -> Format:
    """The format called ``name``; :class:`~inverity.errors.UnknownIdError` lists the known ones.

    Examples
    --------
    >>> get_format("jpegls").extension, get_format("jpegls").client
    ('.jls', 'jls')
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownIdError("format", name, list(REGISTRY)) from None


def list_formats() -> tuple[Format, ...]:
    """Every registered format, in registry (sniff) order."""
    return tuple(REGISTRY.values())


def format_for_extension(ext: str) -> Format:
    """The format a file extension (``.jpg``, ``jpg``, ``.JPG``) names.

    Examples
    --------
    >>> format_for_extension("JPEG").name, format_for_extension(".tif").name
    ('jpeg', 'tiff')
    """
    e = ext.lower() if ext.startswith(".") else f".{ext.lower()}"
    for f in REGISTRY.values():
        if e in f.extensions:
            return f
    raise UnknownIdError("file extension", e, [x for f in REGISTRY.values() for x in f.extensions])


def format_for_media_type(media_type: str) -> Format:
    """The format served as ``media_type`` (parameters and case ignored).

    Examples
    --------
    >>> format_for_media_type("Image/WebP; q=0.8").name
    'webp'
    """
    mt = media_type.split(";", 1)[0].strip().lower()
    for f in REGISTRY.values():
        if f.media_type == mt:
            return f
    raise UnknownIdError("media type", mt, [f.media_type for f in REGISTRY.values() if f.media_type])


def by_stage(codec_id: str) -> Format | None:
    """The format the stage ``codec_id`` writes (its ``Capabilities.format``); ``None`` for ``original``,
    which writes the input's own format. An unknown stage id raises ``UnknownIdError``."""
    from .stages.base import stage_class   # lazy: the stages import this module

    name = stage_class(codec_id).capabilities.format
    return None if name == SAME_AS_INPUT else get_format(name)


# -- views: every other table of format knowledge, derived ----------------------------------------------------

#: (format name, byte offset, magic bytes) rows :func:`sniff` checks in order
MAGIC: tuple[tuple[str, int, bytes], ...] = tuple((f.name, off, m) for f in REGISTRY.values() for off, m in f.magic)


def default_extensions() -> dict[str, str]:
    """Sniffed format -> the extension an output of that format gets (formats the pixel door reads)."""
    return {f.name: f.extension for f in REGISTRY.values() if f.loadable}


def loadable_formats() -> frozenset[str]:
    """The formats ``image.load`` decodes (each names a decoder or a Pillow plugin)."""
    return frozenset(f.name for f in REGISTRY.values() if f.loadable)


def writable_formats() -> tuple[str, ...]:
    """The formats ``image.save``/``image.to_bytes`` write (each names a writer), in registry order."""
    return tuple(f.name for f in REGISTRY.values() if f.writer)


def save_extensions() -> dict[str, str]:
    """File extension -> the format ``image.save`` writes for it (every extension of a writable format)."""
    return {e: f.name for f in REGISTRY.values() if f.writer for e in f.extensions}


def titles() -> dict[str, str]:
    """Format name -> what messages call it (``jxl`` -> ``JPEG XL``)."""
    return {f.name: f.title for f in REGISTRY.values()}


def resolve(ref: str) -> Any:
    """The object a ``"module:attribute"`` reference names (a format's decoder or writer), imported now.

    Examples
    --------
    >>> resolve("inverity.formats:sniff") is sniff
    True
    """
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{ref!r} is not a 'module:function' reference")
    return getattr(importlib.import_module(module), attr)


def walked_formats() -> frozenset[str]:
    """The formats a directory walk treats as images (by content)."""
    return frozenset(f.name for f in REGISTRY.values() if f.walked and f.loadable)


def walked_extensions() -> frozenset[str]:
    """The file extensions of the formats a directory walk treats as images (a dataset folder's image files)."""
    return frozenset(e for f in REGISTRY.values() if f.walked and f.loadable for e in f.extensions)


def served_media_types() -> dict[str, str]:
    """Media type -> format name of the renditions the server offers, in tie-break order (modern first)."""
    served = sorted((f for f in REGISTRY.values() if f.served is not None), key=lambda f: f.served or 0)
    return {str(f.media_type): f.name for f in served}


def browser_formats() -> tuple[str, ...]:
    """The accept names every major browser decodes, in the server's preference order."""
    safe = sorted((f for f in REGISTRY.values() if f.browser_safe), key=lambda f: len(REGISTRY) if f.served is None else f.served)
    return tuple(f.client for f in safe)


def universal_media_types() -> frozenset[str]:
    """Media types a wildcard ``Accept`` reaches (RFC 9110 §12.5.1: only those every client decodes)."""
    return frozenset(str(f.media_type) for f in REGISTRY.values() if f.universal)


def known_extensions() -> set[str]:
    """Every extension an image format claims (an output so named must hold that format)."""
    return {e for f in REGISTRY.values() if f.claims_extensions for e in f.extensions}


def stage_formats() -> dict[str, str]:
    """Stage id -> the format name it declares (``*`` for the input's own), in registry order."""
    from .stages.base import list_stages   # lazy: the stages import this module

    return {cid: cls.capabilities.format for cid, cls in list_stages().items() if cls.capabilities.format}


def stage_client_formats() -> dict[str, str]:
    """Stage id -> the ``accept`` name of what it writes (``*``: the input's own format)."""
    return {cid: name if name == SAME_AS_INPUT else get_format(name).client for cid, name in stage_formats().items()}


def accept_aliases(clients: set[str] | frozenset[str] | tuple[str, ...]) -> dict[str, str]:
    """Spelling -> accept name, for the formats whose accept name is in ``clients`` (name, media type, aliases)."""
    out: dict[str, str] = {}
    for f in REGISTRY.values():
        if f.client not in clients:
            continue
        for spelling in (f.name, f.media_type, *f.aliases):
            if spelling and spelling != f.client:
                out[spelling] = f.client
    return out


def dicom_transfer_syntaxes() -> dict[str, str]:
    """Stage id -> the DICOM transfer syntax its bitstream is (stages whose format is one)."""
    out = {}
    for cid, name in stage_formats().items():
        ts = None if name == SAME_AS_INPUT else get_format(name).dicom_transfer_syntax
        if ts:
            out[cid] = ts
    return out


V = TypeVar("V")


class LazyView(Mapping[str, V]):
    """A read-only mapping computed on first use: a stage-derived view without importing the stages (and their
    codecs) when the module that holds it is imported; a table of decoders without importing them."""

    def __init__(self, build: Callable[[], dict[str, V]]) -> None:
        self._build: Callable[[], dict[str, V]] = build
        self._data: dict[str, V] | None = None

    def _get(self) -> dict[str, V]:
        if self._data is None:
            self._data = self._build()
        return self._data

    def __getitem__(self, key: str) -> V:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(self._get())


def sniff(data: bytes) -> str | None:
    """Return the format name of ``data`` from its magic bytes, or ``None``.

    Examples
    --------
    >>> sniff(b"\\x89PNG\\r\\n\\x1a\\n" + b"\\x00" * 8)
    'png'
    >>> sniff(b"RIFF\\x00\\x00\\x00\\x00WEBPVP8 ")
    'webp'
    >>> sniff(b"hello") is None
    True
    """
    head = bytes(data[:512])
    if head[128:132] == b"DICM":  # before TIFF: some DICOM preambles are TIFF headers (dual-personality files)
        return "dicom"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"mif1", b"msf1", b"heic", b"heix"):
        return "avif" if head[8:12] in (b"avif", b"avis") or b"avif" in head[8:64] else "heif"
    for name, off, magic in MAGIC:
        if head[off : off + len(magic)] == magic:
            return _jpeg_family(data) if name == "jpeg" else name
    return None


def _jpeg_family(data: bytes) -> str:
    """``jpegls`` when the first frame header is SOF55 (JPEG-LS), else ``jpeg``; walks the marker segments."""
    i, n = 2, min(len(data), 1 << 16)
    while i + 4 <= n:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xF7:
            return "jpegls"
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return "jpeg"
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return "jpeg"
