"""Model options: one typed, documented structure per model, read by the registry and the CLI.

A model class declares ``Options``, a frozen dataclass deriving from :class:`ModelOptions` whose
fields are made with :func:`option` (default, one-line help, optional choices and flag aliases)::

    @dataclass(frozen=True)
    class Options(ModelOptions):
        latent_dim: int = option(2, "size of the latent z", low=1)

Field types are ``int``, ``float``, ``bool``, ``str``, ``tuple[int, ...]`` (layer sizes, given on
the command line as ``64,64``), ``tuple[str, ...]`` (several words) and ``X | None``. The command
line's flag for a field is ``--field-name`` (a ``bool`` defaulting to True is switched off by
``--no-field-name``). An option the model does not declare is an error, never ignored.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any


def flag_name(dest: str) -> str:
    """The command-line spelling of an option or argument name: ``latent_dim`` -> ``--latent-dim``."""
    return "-n" if dest == "n" else "--" + dest.replace("_", "-")


def option(default: Any, help: str, *, choices: tuple | None = None, low: int | None = None,
           positive: bool = False, aliases: tuple[str, ...] = (), metavar: str | None = None):
    """A field of a model's ``Options``: its default, one line of help, the values it may take
    (``choices``; ``low``, the least integer; ``positive``, a number above 0) and other
    command-line spellings it is known by (``aliases``)."""
    metadata = {"help": help, "choices": choices, "low": low, "positive": positive, "aliases": tuple(aliases),
                "metavar": metavar}
    if isinstance(default, (list, dict, set)):
        raise TypeError("an option's default must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class OptionField:
    """One declared option: name, type (one of :data:`KINDS`), default, help, choices, aliases."""

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple | None
    low: int | None
    positive: bool
    aliases: tuple[str, ...]
    metavar: str | None
    optional: bool

    @property
    def flag(self) -> str:
        return flag_name(self.name)

    @property
    def wanted(self) -> str:
        """What the option takes, in words ("an integer of at least 1", ...)."""
        if self.kind == "int":
            return "an integer" if self.low is None else f"an integer of at least {self.low}"
        if self.kind == "float":
            return "a finite number above 0" if self.positive else "a finite number"
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        return {"bool": "true or false", "str": "text", "sizes": "a list of positive integers",
                "words": "a list of texts"}[self.kind]


#: the kinds of value an option holds, by the annotation that declares it
KINDS = {int: "int", float: "float", bool: "bool", str: "str", tuple[int, ...]: "sizes", tuple[str, ...]: "words"}


def _kind(annotation) -> tuple[str, bool]:
    """(kind, whether None is allowed) of a field's resolved annotation."""
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional, annotation = True, args[0]
    if annotation not in KINDS:
        raise TypeError(f"option type {annotation!r} is not one of {', '.join(KINDS.values())}")
    return KINDS[annotation], optional


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid(field: OptionField, value) -> bool:
    """Whether ``value`` (as JSON or argparse give it) is a value of ``field``."""
    if field.kind == "bool":
        return isinstance(value, bool)
    if field.kind == "int":
        return _is_int(value) and (field.low is None or value >= field.low)
    if field.kind == "float":
        number = _is_int(value) or isinstance(value, float)
        return number and math.isfinite(value) and (not field.positive or value > 0)
    if field.kind == "str":
        return isinstance(value, str) and (field.choices is None or value in field.choices)
    if not isinstance(value, (list, tuple)):
        return False
    if field.kind == "sizes":
        return len(value) > 0 and all(_is_int(v) and v >= 1 for v in value)
    return all(isinstance(v, str) for v in value)


def _coerce(field: OptionField, value, where: str):
    """``value`` as the field's type (floats as float, lists as tuples), or a one-line ValueError."""
    if value is None and field.optional:
        return None
    if not _valid(field, value):
        raise ValueError(f"{where}: {field.name!r} must be {field.wanted}, not {value!r}")
    if field.kind == "float":
        return float(value)
    return tuple(value) if field.kind in ("sizes", "words") else value


@dataclass(frozen=True)
class ModelOptions:
    """Base of every model's ``Options`` (a frozen dataclass of :func:`option` fields)."""

    @classmethod
    def fields(cls) -> tuple[OptionField, ...]:
        """The declared options, in declaration order."""
        hints = typing.get_type_hints(cls)
        declared = []
        for f in dataclasses.fields(cls):
            kind, optional = _kind(hints[f.name])
            meta = f.metadata
            declared.append(OptionField(f.name, kind, f.default, meta.get("help", ""), meta.get("choices"),
                                        meta.get("low"), meta.get("positive", False), meta.get("aliases", ()),
                                        meta.get("metavar"), optional))
        return tuple(declared)

    @classmethod
    def from_dict(cls, given: dict, where: str = "options"):
        """The options ``given`` (name -> value; the rest at their defaults), each checked against
        its declared type, range and choices; an undeclared name is a one-line ValueError too
        (``where`` begins each message: the model's name, or the file the options came from)."""
        declared = {f.name: f for f in cls.fields()}
        unknown = [name for name in given if name not in declared]
        if unknown:
            names = ", ".join(declared) or "none"
            raise ValueError(f"{where}: no option {unknown[0]!r} (the options are: {names})")
        return cls(**{name: _coerce(declared[name], value, where) for name, value in given.items()})

    def to_dict(self) -> dict:
        """Every option as JSON values (tuples as lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class NoOptions(ModelOptions):
    """A model without options."""
