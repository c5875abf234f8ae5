"""inverity: route every image to the codec stage that fits it, verify the result, fail legibly.

The public API is this module's ``__all__`` (implementation lives in the submodules; ``tests/test_api.py`` keeps
the list from drifting). Names are imported lazily, so ``import inverity`` stays cheap (no torch, no scipy).

Examples
--------
>>> import inverity
>>> "compress" in inverity.__all__ and inverity.__version__ >= "0"
True
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # image I/O
    "Image": "inverity.image", "load": "inverity.image", "save": "inverity.image",
    "dicom_bytes": "inverity.image",
    # errors
    "InverityError": "inverity.errors", "InputError": "inverity.errors", "CodecError": "inverity.errors",
    "UnsupportedInputError": "inverity.errors", "UnknownIdError": "inverity.errors",
    "ContainerError": "inverity.errors", "ModelError": "inverity.errors", "PolicyError": "inverity.errors",
    "MissingDependencyError": "inverity.errors", "RecordError": "inverity.errors",
    # stages
    "Stage": "inverity.stages.base", "Capabilities": "inverity.stages.base", "get_stage": "inverity.stages.base",
    "list_stages": "inverity.stages.base", "register_stage": "inverity.stages.base",
    # analyse / policy / route
    "Profile": "inverity.analyse", "analyse": "inverity.analyse",
    "Policy": "inverity.policy", "get_policy": "inverity.policy", "BUILTIN_POLICIES": "inverity.policy",
    "Candidate": "inverity.route", "plan": "inverity.route",
    # verify
    "Floors": "inverity.verify", "Verdict": "inverity.verify", "verify": "inverity.verify",
    # pipeline / catalog / report
    "compress": "inverity.pipeline", "compress_one": "inverity.pipeline", "Result": "inverity.pipeline",
    "Catalog": "inverity.catalog", "write_report": "inverity.report", "DecisionRecord": "inverity.record",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .analyse import Profile, analyse
    from .catalog import Catalog
    from .errors import (CodecError, ContainerError, InputError, InverityError, MissingDependencyError,
                         ModelError, PolicyError, RecordError, UnknownIdError, UnsupportedInputError)
    from .image import Image, dicom_bytes, load, save
    from .pipeline import Result, compress, compress_one
    from .policy import BUILTIN_POLICIES, Policy, get_policy
    from .record import DecisionRecord
    from .report import write_report
    from .route import Candidate, plan
    from .stages.base import Capabilities, Stage, get_stage, list_stages, register_stage
    from .verify import Floors, Verdict, verify


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'inverity' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
