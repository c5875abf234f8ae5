"""The format registry (issue 11): one definition per format, every other table a view of it."""
from __future__ import annotations

import pytest

from inverity import formats as F
from inverity.errors import UnknownIdError
from inverity.stages.base import Capabilities, list_stages


def _package_stages() -> dict:
    """The stages inverity ships (other test modules register test stages of their own for the session)."""
    return {cid: cls for cid, cls in list_stages().items() if cls.__module__.startswith("inverity.")}


def test_every_stage_declares_a_registered_format() -> None:
    for cid, cls in _package_stages().items():
        name = cls.capabilities.format
        assert name, f"{cid} declares no format"
        if name != F.SAME_AS_INPUT:
            fmt = F.get_format(name)
            assert F.by_stage(cid) is fmt
            # the stage's extensions and media type are its format's (jpeg2000 adds HTJ2K's .j2c)
            assert cls.capabilities.mime == fmt.media_type, cid
            assert set(cls.capabilities.extensions) <= set(fmt.extensions) | {".j2c"}, cid
            assert cls.capabilities.extensions[0] == fmt.extension, cid
    assert F.by_stage("original") is None


def test_every_extension_maps_back_and_media_types_are_unique() -> None:
    for fmt in F.list_formats():
        assert fmt.extensions and all(e.startswith(".") and e == e.lower() for e in fmt.extensions)
        for ext in fmt.extensions:
            assert F.format_for_extension(ext) is fmt
            assert F.format_for_extension(ext.upper().lstrip(".")) is fmt
        if fmt.media_type:
            assert F.format_for_media_type(fmt.media_type) is fmt
    exts = [e for f in F.list_formats() for e in f.extensions]
    mts = [f.media_type for f in F.list_formats() if f.media_type]
    assert len(exts) == len(set(exts)) and len(mts) == len(set(mts))
    served = [f.served for f in F.list_formats() if f.served is not None]
    assert sorted(served) == list(range(len(served)))


def test_unknown_names_list_what_exists() -> None:
    with pytest.raises(UnknownIdError, match="unknown format 'webm'; available: avif, bmp, dicom"):
        F.get_format("webm")
    with pytest.raises(UnknownIdError, match=r"unknown file extension '\.xyz'; available: .*\.jpg"):
        F.format_for_extension("xyz")
    with pytest.raises(UnknownIdError, match="image/png"):
        F.format_for_media_type("image/x-nope")
    with pytest.raises(UnknownIdError, match="unknown codec 'nope'"):
        F.by_stage("nope")
    with pytest.raises(UnknownIdError, match="unknown format 'webm'"):
        Capabilities(lossless=True, format="webm")
    with pytest.raises(ValueError, match="registered twice"):
        F.register_format(F.Format("png", (".png2",)))


def test_capabilities_take_extensions_and_media_type_from_the_format() -> None:
    caps = Capabilities(lossless=True, format="jpegls")
    assert (caps.extensions, caps.mime) == ((".jls",), "image/jls")
    own = Capabilities(lossless=True, format="jp2", extensions=(".jp2", ".j2c"))
    assert (own.extensions, own.mime) == ((".jp2", ".j2c"), "image/jp2")
    bare = Capabilities(lossless=True)
    assert (bare.extensions, bare.mime, bare.format) == ((), "application/octet-stream", "")


# -- every table that used to be written by hand equals the registry's view (and its old contents) ----------------

def test_sniff_magic_is_the_registry_view() -> None:
    assert F.MAGIC[:3] == (("inv", 0, b"INV1"), ("png", 0, b"\x89PNG\r\n\x1a\n"), ("jpeg", 0, b"\xff\xd8\xff"))
    assert {name for name, _, _ in F.MAGIC} | {"webp", "avif", "heif", "jpegls"} == set(F.REGISTRY)
    for fmt in F.list_formats():
        for off, magic in fmt.magic:
            data = b"\x00" * off + magic + b"\x00" * 600
            assert F.sniff(data) == fmt.name


def test_policy_tables_are_views() -> None:
    from inverity import policy

    assert policy.CODEC_FORMAT == F.stage_client_formats()
    assert policy.CODEC_FORMAT == {  # the hand-written table it replaced
        "jpeg": "jpeg", "webp": "webp", "webp-lossless": "webp", "avif": "avif", "jxl": "jxl",
        "jxl-lossless": "jxl", "png": "png", "jpegls": "jls", "jpeg2000": "jp2", "learned": "inv",
        "jxl-jpeg": "jxl", "original": "*"}
    assert policy.FORMATS == ("avif", "inv", "jls", "jp2", "jpeg", "jxl", "png", "webp")
    assert policy.BROWSER_FORMATS == F.browser_formats() == ("avif", "webp", "jpeg", "png")
    assert set(policy.KNOWN_CODEC_IDS) == set(_package_stages())
    assert policy._FORMAT_ALIASES == {
        "jpg": "jpeg", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/webp": "webp", "image/avif": "avif",
        "image/jxl": "jxl", "image/png": "png", "jpegls": "jls", "jpeg-ls": "jls", "image/jls": "jls",
        "jpeg2000": "jp2", "j2k": "jp2", "image/jp2": "jp2", "application/x-inverity": "inv"}
    assert policy.client_format("original", "jpegls") == "jls" and policy.client_format("original", "gif") == "gif"


def test_route_and_pipeline_tables_are_views() -> None:
    from inverity import pipeline, route

    assert dict(pipeline.DICOM_TRANSFER_SYNTAX) == F.dicom_transfer_syntaxes() == {
        "jpegls": "jpegls", "jpeg2000": "jpeg2000"}
    assert set(route.DICOM_TRANSFER_SYNTAX_STAGES) == {"jpegls", "jpeg2000"}
    assert F.default_extensions() == {
        "png": ".png", "jpeg": ".jpg", "jpegls": ".jls", "webp": ".webp", "avif": ".avif", "jxl": ".jxl",
        "jp2": ".jp2", "j2k": ".j2k", "tiff": ".tif", "dicom": ".dcm", "inv": ".inv", "gif": ".gif", "bmp": ".bmp"}
    assert F.walked_formats() == frozenset(F.default_extensions()) - {"inv"}


def test_loader_decodes_exactly_the_loadable_formats() -> None:
    from inverity.image import _load

    assert set(_load._DECODERS) == F.loadable_formats()


def test_server_tables_are_views() -> None:
    from inverity.server import _negotiate, _store

    assert _store.MEDIA_TYPES == F.served_media_types()
    assert list(_store.MEDIA_TYPES.items()) == [
        ("image/avif", "avif"), ("image/jxl", "jxl"), ("image/webp", "webp"), ("image/jpeg", "jpeg"),
        ("image/png", "png"), ("application/x-inverity", "inv")]
    assert _store.LEARNED_MEDIA_TYPE == "application/x-inverity"
    assert _store._ORIGINAL_EXT == {"jpeg": "jpg", "dicom": "dcm", "tiff": "tif", "jpegls": "jls"}
    assert _negotiate.UNIVERSAL == F.universal_media_types() == {"image/jpeg", "image/png", "image/gif"}
    for cid in _package_stages():
        fmt = F.by_stage(cid)
        assert _store.media_type_of_stage(cid) == (fmt.media_type if fmt else "application/octet-stream")


def test_cli_known_extensions_are_the_registry_and_the_stages() -> None:
    from inverity.cli._codecs import _known_extensions

    stage_exts = {e for cls in list_stages().values() for e in cls.capabilities.extensions}
    assert _known_extensions() == F.known_extensions() | stage_exts
    # the hand-written set it replaced (the read-only formats' extensions) plus the stages' own
    assert _known_extensions() == {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".dcm", ".inv", ".heic",
                                   ".heif"} | stage_exts
    assert {".heic", ".heif", ".tif", ".dcm", ".gif", ".bmp"} <= _known_extensions()


def test_lazy_view_builds_once() -> None:
    calls: list[int] = []

    def build() -> dict[str, str]:
        calls.append(1)
        return {"a": "b"}

    view = F.LazyView(build)
    assert calls == [] and dict(view) == {"a": "b"} and view["a"] == "b" and len(view) == 1 and calls == [1]


def test_a_new_stage_of_an_existing_format_needs_no_other_table() -> None:
    """The promise of issue 11: a stage names its format once and every view finds it."""
    from inverity.server._store import media_type_of_stage
    from inverity.stages import base

    class OtherJxl(base.Stage):
        codec_id = "test-other-jxl"
        capabilities = base.Capabilities(lossless=True, format="jxl")

    base.register_stage(OtherJxl)
    try:
        assert F.by_stage("test-other-jxl") is F.get_format("jxl")
        assert F.stage_client_formats()["test-other-jxl"] == "jxl"
        assert OtherJxl.capabilities.extensions == (".jxl",)
        assert media_type_of_stage("test-other-jxl") == "image/jxl"
        assert "test-other-jxl" not in F.dicom_transfer_syntaxes()
    finally:
        del base._REGISTRY["test-other-jxl"]
