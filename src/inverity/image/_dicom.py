"""DICOM in (``decode_dicom``) and out (:func:`dicom_values`, :func:`dicom_bytes`)."""
from __future__ import annotations

import copy
import io
import warnings
from typing import Any

import numpy as np

from ..errors import UnknownIdError, UnsupportedInputError
from ._base import Image, _check_size, _first_that_decodes, _one_line, _Refusal, _Truncated
from ._probe import _j2k_codestream, _j2k_complete, _j2k_siz, _jpeg_sof

#: transfer syntaxes whose frames imagecodecs decodes (pydicom would need optional plugins for several)
_DICOM_IMAGECODECS = {
    "1.2.840.10008.1.2.4.50": "jpeg8",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "jpeg",   # JPEG Extended (12-bit)
    "1.2.840.10008.1.2.4.57": "ljpeg",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": "ljpeg",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "jpegls",
    "1.2.840.10008.1.2.4.81": "jpegls",
    "1.2.840.10008.1.2.4.90": "jpeg2k",
    "1.2.840.10008.1.2.4.91": "jpeg2k",
    "1.2.840.10008.1.2.4.201": "jpeg2k",  # HTJ2K Lossless (OpenJPEG >= 2.5 decodes HT)
    "1.2.840.10008.1.2.4.202": "jpeg2k",
    "1.2.840.10008.1.2.4.203": "jpeg2k",
}

#: uncompressed transfer syntaxes (implicit/explicit little endian, big endian, deflated)
_NATIVE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")

#: transfer syntax name -> UID written by :func:`dicom_bytes`
DICOM_TRANSFER_SYNTAXES = {
    "jpegls": "1.2.840.10008.1.2.4.80",    # JPEG-LS Lossless
    "jpeg2000": "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    "htj2k": "1.2.840.10008.1.2.4.201",    # HTJ2K Lossless
    "explicit": "1.2.840.10008.1.2.1",     # Explicit VR Little Endian (uncompressed)
}


def _decode_dicom_frame(frame: bytes, codec: str, rows: int, cols: int) -> np.ndarray:
    """Decode one encapsulated frame after checking that its own header agrees with Rows × Columns.

    The check matters for safety, not only consistency: the codec allocates what the *frame* header says,
    so a small Rows/Columns in the dataset must not smuggle in a huge codestream.
    """
    import imagecodecs

    if codec == "jpeg2k":
        codestream = _j2k_codestream(frame)  # some encoders wrap frames in JP2
        width, height, _, _ = _j2k_siz(codestream)
        _j2k_complete(codestream)
    else:
        _, _, height, width, _ = _jpeg_sof(frame)
    if (width, height) != (cols, rows):
        raise _Refusal(f"frame header says {width}x{height} but the dataset says {cols}x{rows}")
    if codec == "ljpeg":
        return _first_that_decodes(frame, imagecodecs.ljpeg_decode, imagecodecs.jpeg_decode)
    if codec == "jpeg2k":
        return _first_that_decodes(frame, imagecodecs.jpeg2k_decode, imagecodecs.htj2k_decode)
    return getattr(imagecodecs, f"{codec}_decode")(frame)


def _dicom_frame(ds: Any, ts: str, codec: str | None, rows: int, cols: int, samples: int, photometric: str,
                 notes: list[str]) -> tuple[np.ndarray, str]:
    """Decode the single frame: imagecodecs for the JPEG family, pydicom for native and RLE data; returns the
    samples and the photometric interpretation that now describes them."""
    from pydicom.encaps import generate_frames
    from pydicom.pixels import pixel_array

    if codec is not None:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        raw = _decode_dicom_frame(frame, codec, rows, cols)
        if samples == 3 and codec in ("jpeg8", "jpeg") and photometric != "RGB":
            # libjpeg returns RGB for YCbCr-coded lossy JPEG; the kept dataset must describe the held pixels
            notes.append(f"JPEG-coded {photometric} decoded to RGB")
            photometric = "RGB"
        elif photometric in ("YBR_RCT", "YBR_ICT"):
            notes.append(f"JPEG 2000 {photometric} decoded to RGB")
            photometric = "RGB"
    else:
        # native and RLE: pydicom's own decoders; raw=True keeps YBR samples as stored (no colour conversion)
        raw = pixel_array(ds, index=0, raw=True)
        if photometric == "YBR_FULL_422" and ts in _NATIVE:
            notes.append("YBR_FULL_422 chroma upsampled to YBR_FULL")
            photometric = "YBR_FULL"

    return raw, photometric


def _check_native_length(got: int, rows: int, cols: int, samples: int, allocated: int, photometric: str) -> None:
    """Uncompressed pixel data must be exactly what Rows × Columns × samples × bits say (plus one pad byte)."""
    expected = rows * cols * samples * allocated // 8
    if photometric == "YBR_FULL_422":  # two pixels share one Cb and one Cr sample
        expected = expected * 2 // 3
    if got in (expected, expected + expected % 2):
        return
    header = f"the header ({rows} rows × {cols} columns × {samples} samples × {allocated} bits) says {expected:,}"
    if got < expected:
        raise _Truncated(f"pixel data is {got:,} bytes, {header}")
    raise _Refusal(f"DICOM pixel data is {got:,} bytes but {header} bytes; refusing to guess which pixels are meant")


def decode_dicom(data: bytes, max_pixels: int | None) -> tuple[np.ndarray, int, dict[str, Any]]:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        raise _Refusal("DICOM file has " + (f"{other[0]}, which is not supported" if other else "no pixel data"))
    if "Rows" not in ds or "Columns" not in ds or "BitsAllocated" not in ds:
        raise _Refusal("DICOM image is missing Rows, Columns or BitsAllocated")
    rows, cols = int(ds.Rows), int(ds.Columns)
    _check_size(cols, rows, max_pixels)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise _Refusal(f"multi-frame DICOM is not supported ({frames} frames)")
    samples = int(ds.get("SamplesPerPixel", 1))
    allocated, stored = int(ds.BitsAllocated), int(ds.get("BitsStored", ds.BitsAllocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if allocated not in (8, 16) or not 1 <= stored <= allocated:
        raise _Refusal(f"DICOM pixel data with {allocated} bits allocated / {stored} stored is not supported")
    if samples not in (1, 3):
        raise _Refusal(f"DICOM pixel data with {samples} samples per pixel is not supported")

    ts = str(ds.file_meta.TransferSyntaxUID)
    notes: list[str] = []
    codec = _DICOM_IMAGECODECS.get(ts)
    if ts in _NATIVE:
        _check_native_length(len(ds.PixelData), rows, cols, samples, allocated, photometric)
    elif data.find(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00", data.rfind(b"\xe0\x7f\x10\x00")) < 0:
        # encapsulated frames end with a sequence delimiter item; pydicom reads a cut-off sequence silently
        raise _Truncated("encapsulated pixel data has no sequence delimiter")
    # pydicom warns (and carries on) when pixel data and header disagree — e.g. excess data it silently cuts
    # off; pixels read under such a warning are not the file's pixels, so any warning here is a refusal.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw, photometric = _dicom_frame(ds, ts, codec, rows, cols, samples, photometric, notes)
    if caught:
        raise _Refusal(f"DICOM pixel data refused, pydicom warned: {_one_line(str(caught[0].message))}")

    raw = np.asarray(raw)
    if raw.ndim == 2:
        raw = raw[:, :, None]
    if raw.shape != (rows, cols, samples):
        raise _Refusal(f"decoded DICOM frame has shape {tuple(raw.shape)}, expected {(rows, cols, samples)}")

    # Signed data: take the BitsStored-bit two's-complement pattern (decoders differ on whether they
    # sign-extend) and flip the sign bit, i.e. add 2**(stored-1): the result is unsigned with the same bit depth.
    depth = stored
    meta: dict[str, Any] = {"notes": notes, "dicom_transfer_syntax": ts}
    mask = (1 << stored) - 1
    if signed:
        half = 1 << (stored - 1)
        values = (raw.astype(np.int64) & mask) ^ half
        meta["dicom_signed_offset"] = half
    else:
        values = raw.astype(np.int64)
        if values.min() < 0:
            values = values & mask  # a signed codestream under Pixel Representation 0: keep the bit pattern
        top = int(values.max()) if values.size else 0
        if top > mask:  # junk above BitsStored (e.g. old overlay bits): keep it, losslessly, in a wider depth
            depth = allocated
            notes.append(f"pixel values exceed BitsStored={stored}; kept with {allocated}-bit depth")
    pixels = values.astype(np.uint8 if depth <= 8 else np.uint16)
    if photometric == "MONOCHROME1":
        notes.append("MONOCHROME1: low values display bright; pixels kept as stored")
    elif photometric == "PALETTE COLOR":
        notes.append("PALETTE COLOR: pixels are palette indices; the LUTs stay in the dataset")

    del ds.PixelData
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    kept = pydicom.Dataset(ds)  # a plain Dataset: no reference to the source buffer, cheap to pickle
    kept.file_meta = ds.file_meta
    meta["dicom"] = kept
    return pixels, depth, meta



def dicom_values(image: Image) -> np.ndarray:
    """The pixel values as the DICOM file stores them (H×W×C ``int32``): signed data get their sign back.

    ``load`` adds ``2**(BitsStored-1)`` to signed DICOM samples so they fit an unsigned array of the same bit
    depth; this undoes it. Rescale Slope/Intercept (e.g. Hounsfield units) are *not* applied — they stay in
    ``metadata["dicom"]``. For an image without ``dicom_signed_offset`` the pixels are returned as ``int32``.

    Examples
    --------
    >>> import pydicom.data, pathlib
    >>> from inverity.image import load
    >>> ct = load(pathlib.Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm")
    >>> ct.metadata["dicom_signed_offset"], int(ct.pixels.min()), int(dicom_values(ct).min())
    (32768, 32896, 128)
    """
    offset = int(image.metadata.get("dicom_signed_offset", 0))
    px = image.pixels.astype(np.int64)
    if not offset:
        return px.astype(np.int32)
    bits = offset.bit_length()  # == BitsStored, since offset == 2**(BitsStored-1)
    mask = (1 << bits) - 1
    pattern = (px ^ offset) & mask  # undo the sign-bit flip: the BitsStored-bit two's-complement pattern
    return np.where(pattern >= offset, pattern - (1 << bits), pattern).astype(np.int32)  # sign-extend


def dicom_bytes(image: Image, *, transfer_syntax: str = "jpegls") -> bytes:
    """A complete DICOM Part-10 file: the loaded dataset intact, the pixel data re-encoded losslessly.

    Same object, new encoding: SOP Instance UID and every other attribute are kept; only the transfer syntax,
    the pixel data (and the extended offset table, which described the old encoding) change. Signed data are
    restored exactly (``metadata["dicom_signed_offset"]`` is subtracted again).

    Parameters
    ----------
    image
        An :class:`Image` from :func:`load` of a DICOM file (or ``with_pixels`` of one, same shape).
    transfer_syntax
        ``"jpegls"`` (JPEG-LS Lossless, 1.2.840.10008.1.2.4.80), ``"jpeg2000"`` (JPEG 2000 Lossless Only,
        .4.90), ``"htj2k"`` (HTJ2K Lossless, .4.201) or ``"explicit"`` (Explicit VR Little Endian).

    Raises
    ------
    UnsupportedInputError
        The image carries no DICOM dataset, or its pixels no longer match the dataset's geometry.
    UnknownIdError
        Unknown ``transfer_syntax``.

    Examples
    --------
    >>> import pydicom.data, pathlib
    >>> from inverity.image import load
    >>> ct = load(pathlib.Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm")
    >>> again = load(dicom_bytes(ct))  # JPEG-LS Lossless
    >>> bool((again.pixels == ct.pixels).all())
    True
    >>> again.metadata["dicom"].SOPInstanceUID == ct.metadata["dicom"].SOPInstanceUID
    True
    """
    import pydicom
    from pydicom.encaps import encapsulate

    if transfer_syntax not in DICOM_TRANSFER_SYNTAXES:
        raise UnknownIdError("DICOM transfer syntax", transfer_syntax, list(DICOM_TRANSFER_SYNTAXES))
    source = image.metadata.get("dicom")
    if not isinstance(source, pydicom.Dataset):
        raise UnsupportedInputError("dicom_bytes needs an image loaded from DICOM (metadata['dicom'] is missing)")
    ds = copy.deepcopy(source)
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1))
    if (image.height, image.width, image.channels) != (rows, cols, samples):
        raise UnsupportedInputError(
            f"pixels {image.height}x{image.width}x{image.channels} do not match the DICOM dataset "
            f"({rows}x{cols}x{samples})"
        )
    allocated = int(ds.BitsAllocated)
    stored = int(ds.get("BitsStored", allocated))
    offset = int(image.metadata.get("dicom_signed_offset", 0))
    dtype = np.dtype(("i" if offset else "u") + str(allocated // 8))
    values = dicom_values(image).astype(dtype)
    frame = values[:, :, 0] if samples == 1 else values

    uid = DICOM_TRANSFER_SYNTAXES[transfer_syntax]
    if transfer_syntax == "explicit":
        raw = frame.astype(dtype.newbyteorder("<")).tobytes()
        ds.PixelData = raw + b"\x00" * (len(raw) % 2)
        ds["PixelData"].VR = "OB" if allocated == 8 else "OW"
    else:
        import imagecodecs

        if transfer_syntax == "jpegls":
            # JPEG-LS has no signed samples: by DICOM convention the BitsStored-bit two's-complement pattern is
            # coded as unsigned and readers reinterpret it through Pixel Representation (pydicom does).
            coded = frame
            if offset:
                coded = (frame.astype(np.int64) & ((1 << stored) - 1)).astype(dtype.str.replace("i", "u"))
            stream = imagecodecs.jpegls_encode(coded)
        elif transfer_syntax == "jpeg2000":
            # JPEG 2000 codes signed components natively (Ssiz sign bit), as PS3.5 asks for Pixel Representation 1
            stream = imagecodecs.jpeg2k_encode(frame, level=0, reversible=True, codecformat="j2k",
                                               bitspersample=image.bit_depth, mct=False)
        else:
            stream = imagecodecs.htj2k_encode(frame, reversible=True)
        ds.PixelData = encapsulate([bytes(stream)])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        if samples > 1:
            ds.PlanarConfiguration = 0
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(uid)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()
