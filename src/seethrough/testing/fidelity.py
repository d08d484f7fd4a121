"""torch-fidelity's metric modules for parity tests, without torchvision.

torch-fidelity (a reference implementation of FID, KID, precision/recall and the Inception
Score) imports ``torchvision`` when it is imported, and ``torchvision`` cannot be installed
beside this project's torch. Its metric functions on features (``fid_features_to_statistics``,
``fid_statistics_to_metric``, ``kid_features_to_metric``, ``prc_features_to_metric``,
``isc_features_to_metric``) need only numpy and torch, so the test environment installs it
with ``--no-deps`` into a folder of its own (``<venv>/peers/torch-fidelity``, or the folder
named by ``$SEETHROUGH_TORCH_FIDELITY``) and :func:`load_torch_fidelity` imports it there
with a stand-in for ``torchvision``: a meta-path finder that answers every ``torchvision``
or ``torchvision.*`` import with a permissive stub module, whose missing attributes are
dummy classes (enough for module-level ``from torchvision... import X`` and base classes;
anything that really uses torchvision fails when called, which the metric functions never do).

The finder and the stub modules are removed again once torch-fidelity is imported, so that
nothing else in the process sees a fake ``torchvision``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["FidelityModules", "torch_fidelity_path", "load_torch_fidelity"]

_STUB_ROOT = "torchvision"
_METRICS = ("metric_fid", "metric_kid", "metric_prc", "metric_isc")


class FidelityModules(NamedTuple):
    """torch-fidelity's metric modules."""

    metric_fid: types.ModuleType
    metric_kid: types.ModuleType
    metric_prc: types.ModuleType
    metric_isc: types.ModuleType


def torch_fidelity_path() -> Path:
    """The folder torch-fidelity was installed into with ``--no-deps`` (it holds the
    ``torch_fidelity`` package): ``$SEETHROUGH_TORCH_FIDELITY`` when set, else
    ``<sys.prefix>/peers/torch-fidelity``."""
    env = os.environ.get("SEETHROUGH_TORCH_FIDELITY")
    return Path(env) if env else Path(sys.prefix) / "peers" / "torch-fidelity"


class _Dummy:
    """Stands in for any torchvision class or function; using it raises."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("this is a stand-in for torchvision (not installed); it cannot be used")


class _StubModule(types.ModuleType):
    """A module whose missing attributes are dummy classes (created once per name)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = type(name, (_Dummy,), {"__module__": self.__name__})
        setattr(self, name, value)
        return value


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _StubModule(spec.name)
        module.__path__ = []  # a package, so that submodules import too
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _StubFinder(importlib.abc.MetaPathFinder):
    """Answers imports of ``torchvision`` and its submodules with stub modules."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == _STUB_ROOT or fullname.startswith(_STUB_ROOT + "."):
            return importlib.machinery.ModuleSpec(fullname, _StubLoader(), is_package=True)
        return None


def load_torch_fidelity(path: str | Path | None = None) -> FidelityModules | None:
    """torch-fidelity's ``metric_fid``, ``metric_kid``, ``metric_prc`` and ``metric_isc``
    modules, or None when the folder (see :func:`torch_fidelity_path`) has no
    ``torch_fidelity`` package (tests then skip, printing why).

    The folder goes on ``sys.path``; during the import a stand-in ``torchvision`` answers
    torch-fidelity's module-level imports (only when the real one is not importable), and
    it is taken away again afterwards."""
    folder = Path(path) if path is not None else torch_fidelity_path()
    if not (folder / "torch_fidelity" / "__init__.py").is_file():
        return None
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    if "torch_fidelity" in sys.modules:
        return FidelityModules(*(importlib.import_module(f"torch_fidelity.{m}") for m in _METRICS))
    try:
        importlib.import_module(_STUB_ROOT)
        real_torchvision = True
    except Exception:  # noqa: BLE001 - any failure (missing, or broken against this torch) means: stub it
        real_torchvision = False
        for name in [n for n in sys.modules if n == _STUB_ROOT or n.startswith(_STUB_ROOT + ".")]:
            del sys.modules[name]  # a half-imported real torchvision
    finder = None if real_torchvision else _StubFinder()
    if finder is not None:
        sys.meta_path.insert(0, finder)
    try:
        modules = FidelityModules(*(importlib.import_module(f"torch_fidelity.{m}") for m in _METRICS))
    finally:
        if finder is not None:
            sys.meta_path.remove(finder)
            for name in [n for n in sys.modules if n == _STUB_ROOT or n.startswith(_STUB_ROOT + ".")]:
                if isinstance(sys.modules[name], _StubModule):
                    del sys.modules[name]
    return modules
