"""The format registry (issue 11): one definition per format, every other table a view of it."""
from __future__ import annotations

from pathlib import Path

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

    assert set(_load._DECODERS) == F.loadable_formats() == {  # the hand-written table it replaced
        "png", "jpeg", "jpegls", "gif", "bmp", "webp", "tiff", "avif", "jxl", "jp2", "j2k", "dicom", "inv"}
    for fmt in F.list_formats():
        decoder = _load._DECODERS.get(fmt.name)
        if fmt.decoder:   # the function the Format names, nothing else
            assert decoder is F.resolve(fmt.decoder), fmt.name
        elif fmt.pillow:  # only a Pillow plugin: the generic Pillow decoder, told which format
            assert decoder.func is _load.decode_pillow and decoder.args == (fmt.name,), fmt.name
        else:
            assert decoder is None and not fmt.loadable, fmt.name
    # the Pillow plugin each decoder opens is the Format's (JPEG, TIFF and AVIF read metadata through Pillow too)
    assert {f.name for f in F.list_formats() if f.pillow} == {"jpeg", "gif", "tiff", "bmp", "webp", "avif"}


def test_save_tables_are_views() -> None:
    from inverity.image import SAVE_FORMATS, _save, to_bytes

    assert SAVE_FORMATS == F.save_extensions() == {  # the hand-written table it replaced
        ".png": "png", ".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp",
        ".avif": "avif", ".jxl": "jxl", ".jls": "jpegls", ".jp2": "jp2", ".j2k": "j2k", ".j2c": "j2k",
        ".bmp": "bmp", ".dcm": "dicom"}
    assert dict(_save._ENCODERS) == {name: F.resolve(str(F.get_format(name).writer)) for name in F.writable_formats()}
    assert set(_save._ENCODERS) == set(SAVE_FORMATS.values()) and set(_save._ENCODERS) <= F.loadable_formats()
    # an extension without its dot names its format, as before ("tif", "jpg", "dcm", "jls")
    import numpy as np

    from inverity.image import Image

    img = Image(np.zeros((2, 2, 1), np.uint8))
    for spelling, name in (("tif", "tiff"), ("JPG", "jpeg"), (".jls", "jpegls"), ("j2c", "j2k")):
        assert F.sniff(to_bytes(img, spelling)) == name, spelling
    with pytest.raises(UnknownIdError, match="unknown output format 'gif'; available: avif, bmp, dicom"):
        to_bytes(img, "gif")


def test_messages_name_formats_by_their_title() -> None:
    from inverity.image import _base, load

    assert _base._FORMAT_NAMES == F.titles()
    assert F.titles()["jxl"] == "JPEG XL" and F.titles()["jpegls"] == "JPEG-LS" and F.titles()["png"] == "PNG"
    from inverity.errors import InputError

    with pytest.raises(InputError, match="HEIF files are not supported as input"):
        load(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)


def test_a_new_format_reaches_load_and_save_through_its_entry() -> None:
    """A format with a decoder and a writer is one entry: the loader's and save's tables find it."""
    from inverity.image import _load, _save

    fmt = F.register_format(F.Format("test-fmt", (".tfmt",), decoder="inverity.image._png:decode_png",
                                     writer="inverity.image._save:write_png", title="Test"))
    try:
        assert _load._decoders()["test-fmt"] is F.resolve("inverity.image._png:decode_png")
        assert _save._writers()["test-fmt"] is _save.write_png
        assert F.save_extensions()[".tfmt"] == "test-fmt" and F.titles()["test-fmt"] == "Test"
        assert fmt.loadable and "test-fmt" in F.loadable_formats()
    finally:
        del F.REGISTRY["test-fmt"]
    with pytest.raises(ValueError, match="not a 'module:function' reference"):
        F.resolve("inverity.image._png.decode_png")


def _format_spellings() -> tuple[set[str], set[str]]:
    """(every format name and extension, with and without the dot; those of them that are no stage's id)."""
    exts = {e for f in F.list_formats() for e in f.extensions}
    spellings = set(F.REGISTRY) | exts | {e[1:] for e in exts}
    return spellings, spellings - set(list_stages())


#: hand-written format lists allowed outside formats.py ("<path under src/inverity>"); a stale entry fails the test
FORMAT_TABLE_EXEMPT: frozenset[str] = frozenset()


def hand_written_format_tables(root: Path) -> list[str]:
    """``path:line`` of every dict literal under ``root`` (but ``formats.py``) keyed by two or more format names
    or extensions, and of every tuple/list/set literal of three or more, one of which is no stage id (tables
    keyed by stage id, e.g. rd's qualities, are not formats; a stage's own two extensions are its capabilities)."""
    import ast

    spellings, format_only = _format_spellings()
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "formats.py" and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                keys, least = node.keys, 2
            elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                keys, least = node.elts, 3
            else:
                continue
            hits = [k.value for k in keys if isinstance(k, ast.Constant) and k.value in spellings]
            if len(hits) >= least and set(hits) & format_only:
                found.append(f"{path.relative_to(root).as_posix()}:{node.lineno}")
    return found


def test_no_hand_written_format_table() -> None:
    """Issue 11: format knowledge is written once, in inverity.formats; a dict keyed by format names or extensions
    (or a list of them) anywhere else is a second copy (make it a view: a field of Format, a function in formats)."""
    import inverity

    root = Path(inverity.__file__).resolve().parent
    found = hand_written_format_tables(root)
    assert [f for f in found if f.split(":")[0] not in FORMAT_TABLE_EXEMPT] == []
    stale = FORMAT_TABLE_EXEMPT - {f.split(":")[0] for f in found}
    assert not stale, f"no format table there now, remove from FORMAT_TABLE_EXEMPT: {sorted(stale)}"


def test_bench_walks_the_files_load_reads() -> None:
    from inverity.bench._data import IMAGE_SUFFIXES

    assert IMAGE_SUFFIXES == F.walked_extensions()
    assert {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".jxl", ".avif", ".dcm"} <= IMAGE_SUFFIXES
    assert not {".ppm", ".pgm", ".inv", ".heic"} & IMAGE_SUFFIXES   # no loader reads them / not images to walk


def test_the_table_check_finds_one(tmp_path: Path) -> None:
    (tmp_path / "formats.py").write_text('MAGIC = {"png": 1, "tiff": 2}\n')   # the registry itself may
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "save.py").write_text('X = 1\nSAVE = {".png": "png", ".tif": "tiff"}\n')
    (tmp_path / "names.py").write_text('N = {"tif": "tiff", "jpg": "jpeg"}\n')
    (tmp_path / "stages.py").write_text('Q = {"jpeg": 1, "webp": 2, "avif": 3}\n'   # keyed by stage id: fine
                                        'E = (".jp2", ".j2c")\nS = {".png", ".tif", ".bmp", ".ppm"}\n')
    assert hand_written_format_tables(tmp_path) == ["names.py:1", "stages.py:3", "sub/save.py:2"]


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
