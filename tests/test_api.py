"""The public API does not drift (STYLE.md 8): every exported name resolves, and the list is the one we chose."""
from __future__ import annotations

import subprocess
import sys

import inverity

EXPECTED = {
    "__version__", "Image", "load", "save", "dicom_bytes",
    "InverityError", "InputError", "CodecError", "UnsupportedInputError", "UnknownIdError", "ContainerError",
    "ModelError", "PolicyError", "MissingDependencyError", "RecordError",
    "Stage", "Capabilities", "get_stage", "list_stages", "register_stage",
    "Profile", "analyse", "Policy", "get_policy", "BUILTIN_POLICIES", "Candidate", "plan",
    "Floors", "Verdict", "verify", "compress", "compress_one", "Result", "Catalog", "write_report",
    "DecisionRecord",
}


def test_exported_members_are_exactly_the_expected_ones() -> None:
    assert set(inverity.__all__) == EXPECTED


def test_every_exported_name_resolves() -> None:
    for name in inverity.__all__:
        assert getattr(inverity, name) is not None, name


def test_importing_inverity_is_cheap() -> None:
    code = "import sys, inverity; print('torch' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_version_matches_package_metadata() -> None:
    from importlib.metadata import version

    assert inverity.__version__ == version("inverity")
