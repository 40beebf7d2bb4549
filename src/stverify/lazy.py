"""Packages whose public names are imported on first use (PEP 562), so that importing the package
(and ``stverify --help``) does not pay for torch, onnx and the solvers until a name needs them."""
from __future__ import annotations

import importlib
import sys
import types


class LazyPackage(types.ModuleType):
    """A package module with ``_lazy`` = {public name: the module defining it, relative to the
    package}.  Importing a submodule named like one of those names (``stverify.verify``,
    ``stverify.audit.audit``) does not replace the public name with the submodule."""

    def __getattr__(self, name: str):
        lazy = self.__dict__.get("_lazy", {})
        if name not in lazy:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(lazy[name], self.__name__), name)
        self.__dict__[name] = value
        return value

    def __dir__(self):
        return sorted(set(self.__dict__) | set(self.__dict__.get("_lazy", {})))

    def __setattr__(self, name: str, value):
        if not (name in self.__dict__.get("_lazy", {}) and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


def lazy_package(package: str, sources: dict[str, str]) -> list[str]:
    """Make the package ``package`` (its ``__name__``) a ``LazyPackage`` exporting ``sources``;
    returns its ``__all__``."""
    module = sys.modules[package]
    module.__class__ = LazyPackage
    module.__dict__["_lazy"] = dict(sources)
    return sorted(sources)
