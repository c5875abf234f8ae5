"""What an output file is, and whether it may be written: a plain file in the stage's own format, or the input's
DICOM dataset around the stage's transfer syntax; and the one safety check every writer runs before it writes
(CLI ``encode``/``decode``/``compress``, server).

**Plain file or DICOM.** :func:`extension_for` names a plain output after its stage's format (the format
registry, :mod:`inverity.formats`). A DICOM input kept as DICOM (archive/diagnostic) is written by
:class:`DicomOutput`, a stage wrapper whose bitstream *is* the DICOM file: the quality search encodes and
verifies that file itself, so the output is encoded once and verified once — no second encode after the
choice, no second verdict.

**Safety.**

DESIGN.md: *no command writes over its own input*. A path can name an input without being spelt like it
(``./a.png`` vs ``a.png``, a symlink, a hard link), so the check compares resolved paths *and* the files'
identity (``st_dev``, ``st_ino``). It also refuses, before any work is done, an output that cannot be written
for a reason the user can fix: a directory where a file is wanted, or a file where a directory is needed
(``-o out/x.png`` when ``out`` is a file).

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "a.png").write_bytes(b"x")
>>> check_output(d / "b.webp", [d / "a.png"]) == d / "b.webp"
True
>>> check_output(d / "." / "a.png", [d / "a.png"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
inverity.errors.InputError: ...a.png: is the input ...a.png; refusing to write over an input (choose another output)
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from . import formats as _formats
from .errors import InputError

if TYPE_CHECKING:
    from .image import Image
    from .stages.base import Capabilities, Stage

__all__ = ["check_output", "check_output_dir", "same_file", "check_extension", "sha256_file", "extension_for",
           "DicomOutput", "DicomStages", "DICOM_TRANSFER_SYNTAX", "dicom_note"]

#: stage that passed -> the lossless DICOM transfer syntax its bitstream is (``jpeg2000`` with ``htj2k=True`` ->
#: ``htj2k``); a view of the format registry. Other stages (PNG, WebP, JPEG XL) do not compete for DICOM output.
DICOM_TRANSFER_SYNTAX: Mapping[str, str] = _formats.LazyView(_formats.dicom_transfer_syntaxes)


def _dotted(ext: str) -> str:
    return ext if ext.startswith(".") else f".{ext}"


def extension_for(stage: Stage, payload: bytes) -> str:
    """The output extension: the configured stage's own (options may change it: HTJ2K writes ``.j2c``), else
    its format's (the registry's first extension), else that of the payload's sniffed format (``original``
    writes the input's own format).

    Examples
    --------
    >>> from inverity.stages.base import get_stage
    >>> extension_for(get_stage("png"), b""), extension_for(get_stage("jpeg2000", htj2k=True), b"")
    ('.png', '.j2c')
    >>> extension_for(get_stage("original"), bytes.fromhex("ffd8ffe0"))
    '.jpg'
    """
    own = getattr(stage, "extension", None)   # optional on a stage: set where options change the file type
    if isinstance(own, str) and own:
        return _dotted(own)
    if stage.capabilities.extensions:
        return _dotted(stage.capabilities.extensions[0])
    return _formats.default_extensions().get(_formats.sniff(payload) or "", f".{stage.codec_id}")


def _transfer_syntax(codec_id: str, options: Mapping[str, Any]) -> str:
    ts = DICOM_TRANSFER_SYNTAX.get(codec_id, "jpegls")   # PNG, WebP, JPEG XL cannot be carried: JPEG-LS
    return "htj2k" if ts == "jpeg2000" and options.get("htj2k") else ts


class DicomOutput:
    """A stage whose output is the DICOM file: the input's dataset kept intact, the pixels in ``inner``'s
    transfer syntax (losslessly: the DICOM writer, :func:`inverity.image.dicom_bytes`, re-encodes exactly).

    ``decode`` reads the file back through the one pixel door (:func:`inverity.image.load`), so the verifier
    judges what is written. The record keeps ``inner``'s id and config; ``transfer_syntax`` says which
    syntax the file uses.
    """

    def __init__(self, inner: Stage, transfer_syntax: str, write: Callable[..., bytes],
                 read: Callable[..., Image]) -> None:
        self.inner, self.transfer_syntax, self._write, self._read = inner, transfer_syntax, write, read
        self.codec_id = inner.codec_id
        caps: Capabilities = inner.capabilities
        self.capabilities = dataclasses.replace(
            caps, extensions=(".dcm",), mime="application/dicom",
            metadata=tuple(dict.fromkeys((*caps.metadata, "dicom"))))
        self.extension = ".dcm"

    def get_config(self) -> dict[str, Any]:
        return self.inner.get_config()

    def encode(self, image: Image) -> bytes:
        return bytes(self._write(image, transfer_syntax=self.transfer_syntax))

    def decode(self, data: bytes) -> Image:
        return self._read(data, name="DICOM output")

    def __repr__(self) -> str:
        return f"DicomOutput({self.inner!r}, {self.transfer_syntax!r})"


@dataclasses.dataclass(frozen=True)
class DicomStages:
    """``get_stage`` for DICOM output: a stage comes wrapped in :class:`DicomOutput` (its own transfer syntax
    where its bitstream is one, else JPEG-LS), unless its output already carries the dataset (``original``: the
    DICOM file kept as is)."""

    get_stage: Callable[..., Stage]
    write: Callable[..., bytes]
    read: Callable[..., Image]

    def __call__(self, codec_id: str, **kw: Any) -> Stage:
        stage = self.get_stage(codec_id, **kw)
        if "dicom" in stage.capabilities.metadata:
            return stage
        opts = {k: v for k, v in kw.items() if k != "quality"}
        wrapped: Any = DicomOutput(stage, _transfer_syntax(codec_id, opts), self.write, self.read)
        return wrapped   # a Stage in all but inheritance (it wraps one)


def dicom_note(stage: DicomOutput, options: Mapping[str, Any], policy: str | None) -> str:
    """The record's reason for a DICOM output written through :class:`DicomOutput`."""
    ts = stage.transfer_syntax
    note = ""
    if options.get("near"):
        note = " (lossless: the DICOM writer re-encodes losslessly, so the near-lossless bound is not used)"
    return f"DICOM input under {policy}: written as DICOM ({ts}), dataset kept{note}"


def sha256_file(path: str | os.PathLike[str] | None) -> str | None:
    """sha256 of a file read in 1 MiB chunks; ``None`` when there is no path or it cannot be read."""
    if not path:
        return None
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when ``a`` and ``b`` name the same file: equal resolved paths (symlinks followed), or — both existing —
    the same inode on the same device (hard links, bind mounts)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.resolve() == pb.resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop: fall through to the inode check
        pass
    try:
        sa, sb = pa.stat(), pb.stat()
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _writable_parent(out: Path) -> None:
    """Refuse when an ancestor of ``out`` exists but is not a directory (it could never be created)."""
    for parent in out.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise InputError(f"{out}: cannot create it: {parent} exists and is a file, not a directory")
            return


def check_output(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]) -> Path:
    """Check that writing the file ``out`` is safe and possible; returns ``Path(out)``.

    Raises
    ------
    InputError
        ``out`` names one of ``inputs`` (same path after resolving symlinks, or a hard link to it); ``out`` is an
        existing directory; or an ancestor of ``out`` is a file. The message names the user's path and the cause.
    """
    p = Path(out)
    for src in inputs:
        if same_file(p, src):
            raise InputError(f"{p}: is the input {src}; refusing to write over an input (choose another output)")
    if p.is_dir():
        raise InputError(f"{p}: is a directory; give a file name for the output")
    _writable_parent(p)
    return p


def check_output_dir(outdir: str | os.PathLike[str]) -> Path:
    """Check that ``outdir`` can be an output directory: it is one, or can be created (no file in the way)."""
    p = Path(outdir)
    if p.exists() and not p.is_dir():
        raise InputError(f"{p}: exists and is a file; the output (-o) must be a directory")
    _writable_parent(p)
    return p


def check_extension(out: str | os.PathLike[str], codec_id: str, extensions: Iterable[str],
                    known: Iterable[str]) -> None:
    """Refuse an output whose extension names *another* image format than the codec writes (AVIF bytes in a
    ``.png``). An extension no image format uses (``.bin``) is left alone.

    Examples
    --------
    >>> check_extension("x.avif", "avif", [".avif"], [".png", ".avif"])
    >>> check_extension("x.bin", "avif", [".avif"], [".png", ".avif"])
    >>> check_extension("x.png", "avif", [".avif"], [".png", ".avif"])
    Traceback (most recent call last):
    ...
    inverity.errors.InputError: x.png: avif writes .avif files, not .png; name the output x.avif
    """
    exts = [e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions]
    suffix = Path(out).suffix.lower()
    if not exts or suffix in exts:
        return
    if suffix in {k.lower() for k in known}:
        raise InputError(f"{out}: {codec_id} writes {' or '.join(exts)} files, not {suffix}; "
                         f"name the output {Path(out).with_suffix(exts[0]).name}")
