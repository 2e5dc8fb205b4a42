"""Packages that are also their command's function: ``prefkit.reflogps(...)``, ``prefkit.generate(...)`` and
``prefkit.report(...)`` run the command while ``prefkit.reflogps.engine`` … stay submodules of one name."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def callable_package(package: str, target: str) -> None:
    """Make the imported package ``package`` callable: a call runs ``target`` (``"module:function"``, imported on
    the first call, so the package stays import-light), and ``__wrapped__`` is that function, so
    ``inspect.signature`` shows its keywords."""
    module, _, name = target.partition(":")

    def function() -> Any:
        return getattr(importlib.import_module(module), name)

    class CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return function()(*args, **kwargs)

        @property
        def __wrapped__(self) -> Any:
            return function()

    sys.modules[package].__class__ = CallablePackage
