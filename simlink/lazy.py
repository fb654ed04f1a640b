"""Lazy package exports (PEP 562), so that importing a package imports none of its heavy
submodules (torch, Sionna) until one of their names is used.

>>> __getattr__, __dir__ = lazy_exports(__name__, {"DigitalLink": "simlink.phy.link"})
"""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package whose attribute ``name`` is ``names[name]``'s
    attribute of the same name, imported on first access (then cached in the package)."""
    import sys

    def __getattr__(name: str):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(names) | set(vars(sys.modules[package])))

    return __getattr__, __dir__
