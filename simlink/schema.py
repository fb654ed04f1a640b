"""Shared pieces of the scenario schema (pydantic, no torch): strict models, entries chosen by
name from a :class:`~simlink.registry.Registry`, and hashes that survive new keys.

* :class:`Strict` — base of every schema model: unknown keys are errors.
* :func:`registry_entry` — a field type for list entries such as ``channels:`` and ``methods:``
  whose ``name`` picks the model class from a registry (a new channel or method is one class
  registered by a decorator; nothing else is edited). Errors inside the chosen model are
  reported at their full path (``channels.0.granularity: 'frame' is not one of block, image``).
* :func:`registered_name` — a string field that must name a registry entry (``task.kind``).
* :func:`settings_dump` — what a model's hash should see: only the values that differ from the
  defaults, so adding a key with a default to the schema leaves every existing hash unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, SerializeAsAny, ValidationError


class Strict(BaseModel):
    """A schema model that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid")


class NestedError(ValueError):
    """Raised inside validators to report problems at a location below the field being validated.

    Attributes:
        problems: ``(path, text)`` pairs; ``path`` is relative to the field (``"name"``,
            ``"train.lr"``; ``""`` for the field itself).
    """

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = list(problems)
        super().__init__("; ".join(_line(p, t) for p, t in self.problems))


def registry_entry(registry, base: type[BaseModel], model_of: Callable[[Any], type[BaseModel]] = lambda e: e,
                   what: str | None = None):
    """An ``Annotated`` field type: a mapping with a ``name`` key validated by the model class
    that ``registry[name]`` gives (``model_of(entry)``: the entry itself for channels, the
    method's ``Config`` for methods). Serialises with the chosen class's fields.

    Args:
        registry: a :class:`~simlink.registry.Registry`.
        base: the common base class of the models (the field's declared type).
        model_of: maps a registry entry to its pydantic model class.
        what: noun for messages (default ``registry.what``).
    """
    noun = what or registry.what

    def parse(value: Any) -> Any:
        if isinstance(value, base):
            return value
        if not isinstance(value, dict) or "name" not in value:
            raise NestedError([("", f"each {noun} needs a 'name'")])
        name = value["name"]
        if not isinstance(name, str) or name not in registry:
            raise NestedError([("name", f"{name!r} is not one of {', '.join(registry.names())}")])
        try:
            return model_of(registry[name]).model_validate(value)
        except ValidationError as e:
            raise NestedError(error_lines(e)) from None

    return Annotated[SerializeAsAny[base], BeforeValidator(parse)]


def registered_name(registry):
    """An ``Annotated`` ``str`` field type whose value must be a name in ``registry`` (the error
    lists the registered names)."""

    def check(value: str) -> str:
        if value not in registry:
            raise ValueError(f"{value!r} is not one of {', '.join(registry.names())}")
        return value

    return Annotated[str, AfterValidator(check)]


def settings_dump(model: BaseModel, **kwargs) -> dict:
    """``model.model_dump(mode="json", exclude_defaults=True)``: the settings that differ from the
    defaults (recursively). Two models that differ only in keys left at their defaults dump the
    same, so a hash of this survives new schema keys with defaults."""
    return model.model_dump(mode="json", exclude_defaults=True, **kwargs)


# ---- error messages -------------------------------------------------------------------------
import json  # noqa: E402
import re  # noqa: E402


def _fmt_value(v: Any) -> str:
    s = repr(v) if isinstance(v, str) else json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _line(path: str, text: str) -> str:
    return f"{path}: {text}" if path else text


def _problems(err: dict) -> list[tuple[str, str]]:
    """``(path, text)`` pairs of one pydantic error (several for a nested entry's errors)."""
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    typ, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    nested = ctx.get("error")
    if typ == "value_error" and isinstance(nested, NestedError):
        return [(_join(loc, path), text) for path, text in nested.problems]
    if typ == "literal_error":
        allowed = ctx.get("expected", "").replace(" or ", ", ").replace("'", "")
        text = f"{_fmt_value(value)} is not one of {allowed}"
    elif typ == "extra_forbidden":
        text = "unknown key (not allowed here; check spelling)"
    elif typ == "missing":
        text = "required key is missing"
    elif typ == "union_tag_invalid":
        text = f"{_fmt_value(ctx.get('tag'))} is not one of {ctx.get('expected_tags', '').replace(chr(39), '')}"
    else:
        msg = err["msg"].removeprefix("Value error, ")
        shown = _fmt_value(value)
        m = re.match(r"^([A-Za-z_][\w.]*): (.*)$", msg, re.S)
        if isinstance(value, dict) and m:
            return [(_join(loc, m.group(1)), m.group(2))]  # a model-level check naming its field
        if value is None or isinstance(value, dict) or msg.startswith((shown, str(value))):
            text = msg
        else:
            text = f"{shown}: {msg}"
    return [(loc, text)]


def error_lines(e: ValidationError) -> list[tuple[str, str]]:
    """Every problem of ``e`` as ``(field.path, what is wrong)`` (nested entries expanded)."""
    out: list[tuple[str, str]] = []
    for err in e.errors():
        out += _problems(err)
    return out


def format_errors(e: ValidationError) -> str:
    """One line per problem, ``field.path: what is wrong``."""
    return "\n".join(_line(p, t) for p, t in error_lines(e))
