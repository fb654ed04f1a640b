"""One registry pattern for everything simlink looks up by name.

Methods, channels, task kinds, task architectures, pretrained task models, payload kinds and
datasets are each a :class:`Registry`: a name -> object table filled by a decorator, in which
registering a name twice is an error (as in torchvision) and looking up an unknown name raises
:class:`UnknownName`, a :class:`~simlink.errors.SimlinkError` that lists the known names.

A registry can name the modules that register its built-in entries (``builtins``); they are
imported on first use, so importing a registry (and the scenario schema built on it) costs
nothing — in particular neither torch nor Sionna is imported until an entry is needed.

>>> FRUIT = Registry("fruit")
>>> @FRUIT.register("apple")
... class Apple: ...
>>> FRUIT["apple"] is Apple
True
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, TypeVar

from simlink.errors import SimlinkError

T = TypeVar("T")


class UnknownName(SimlinkError, KeyError):
    """A name that is not in a registry; the message lists the names that are."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateName(ValueError):
    """A second registration under a name already taken (a programming error, not user input)."""


class Registry(Generic[T]):
    """``name -> object``, filled by :meth:`register`; iteration follows registration order.

    Args:
        what: what the entries are, for messages ("method", "channel", ...).
        builtins: modules whose import registers the built-in entries; imported on first use.
    """

    def __init__(self, what: str, builtins: tuple[str, ...] = ()) -> None:
        self.what = what
        self._builtins = tuple(builtins)
        self._loaded = not builtins
        self._loading = False
        self._entries: dict[str, T] = {}

    # ---- filling ---------------------------------------------------------------------------
    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name``. Raises :class:`DuplicateName` if it is taken."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.what} needs a non-empty string name, got {name!r}")
        self._load()  # built-ins first, whoever registers first: registration order stays stable
        if name in self._entries:
            raise DuplicateName(f"{self.what} {name!r} registered twice ({self._entries[name]!r} and {obj!r})")
        self._entries[name] = obj
        return obj

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` (default: its ``name``
        attribute, which must then be a string)."""

        def deco(obj: T) -> T:
            key = name if name is not None else getattr(obj, "name", None)
            if not isinstance(key, str):
                raise ValueError(f"registering {obj!r} as a {self.what}: give a name (register('...')) "
                                 "or a string 'name' attribute")
            self.add(key, obj)
            return obj

        return deco

    def unregister(self, name: str) -> T:
        """Remove and return the entry ``name`` (for tests that register a temporary entry)."""
        self._load()
        return self._entries.pop(name)

    # ---- lookup ----------------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        before = dict(self._entries)
        try:
            for module in self._builtins:
                importlib.import_module(module)
            self._loaded = True
        except BaseException:
            self._entries = before  # a half-imported module's entries would read as duplicates next time
            raise
        finally:
            self._loading = False

    def __getitem__(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(f"{name!r} is not one of {', '.join(self.names())}") from None

    def get(self, name: str, default: T | None = None) -> T | None:
        self._load()
        return self._entries.get(name, default) if isinstance(name, str) else default

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        self._load()
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return list(self._entries.items())

    def values(self) -> list[T]:
        self._load()
        return list(self._entries.values())

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {len(self._entries)} entries)"
