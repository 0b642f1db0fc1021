"""Command-line flags generated from the models' declared options (:mod:`dlvm.models.options`).

Every option a registered model declares becomes one flag of ``dlvm fit`` and ``dlvm compare``:
``latent_dim`` is ``--latent-dim``, a ``bool`` defaulting to False is ``--NAME`` and one defaulting
to True is ``--no-NAME``, ``tuple[int, ...]`` is ``64,64`` and ``tuple[str, ...]`` takes several
words. Flags default to None (not given), so a model's own default applies; a flag given to a
model that does not declare it is a one-line error (:func:`model_options`).
"""
from __future__ import annotations

import argparse

from ...models import MODELS
from ...models.options import OptionField

#: model-option flags that are guide options too: given to a model without the option, they go
#: to its guide only (the encoder's layer sizes)
GUIDE_FLAGS = ("hidden",)


def sizes(text: str) -> tuple[int, ...]:
    """argparse type of layer sizes: "64,64" -> (64, 64)."""
    try:
        values = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be positive integers, got {text!r}")
    return values


def declared_options() -> dict[str, list[tuple[str, OptionField]]]:
    """Option name -> [(model name, its declaration)], over every registered model, in order."""
    found: dict[str, list[tuple[str, OptionField]]] = {}
    for spec in MODELS.values():
        for field in spec.options.fields():
            found.setdefault(field.name, []).append((spec.name, field))
    return found


def _flag_help(declarations: list[tuple[str, OptionField]]) -> str:
    """Each model's help for the option with its default, models that say the same grouped:
    "K, the size of the latent z (default: vae 2, vrae 8); L, the factors of each component (mppca 2)"."""
    by_help: dict[str, list[str]] = {}
    for model, field in declarations:
        by_help.setdefault(field.help, []).append(f"{model} {_shown(field.default)}")
    parts = [f"{text} ({'default: ' if i == 0 else ''}{', '.join(models)})" for i, (text, models) in enumerate(by_help.items())]
    return "; ".join(parts)


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) and value else str(value)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per declared model option; a TypeError if two models declare an option as
    different kinds (the flag could not mean both)."""
    for name, declarations in declared_options().items():
        kinds = {field.kind for _, field in declarations}
        if len(kinds) > 1:
            models = ", ".join(model for model, _ in declarations)
            raise TypeError(f"option {name} is declared as {' and '.join(sorted(kinds))} by {models}")
        field = declarations[0][1]
        help_text = _flag_help(declarations)
        if field.kind == "bool":
            on = {f.default for _, f in declarations}
            if len(on) > 1:
                raise TypeError(f"option {name} defaults to True in one model and False in another")
            if True in on:
                parser.add_argument(f"--no-{name.replace('_', '-')}", *(f"--no-{a.lstrip('-')}" for a in field.aliases),
                                    dest=name, action="store_const", const=False, default=None,
                                    help=f"turn off: {help_text}")
            else:
                parser.add_argument(field.flag, *field.aliases, dest=name, action="store_const", const=True,
                                    default=None, help=help_text)
            continue
        kwargs: dict = {"dest": name, "default": None, "help": help_text, "metavar": field.metavar}
        if field.kind == "words":
            kwargs["nargs"] = "+"
        else:
            kwargs["type"] = {"int": int, "float": float, "str": str, "sizes": sizes}[field.kind]
        choices = [f.choices for _, f in declarations]
        if field.kind == "str" and all(c is not None for c in choices):
            kwargs["choices"] = tuple(dict.fromkeys(c for group in choices for c in group))
            kwargs.pop("metavar")
        parser.add_argument(field.flag, *field.aliases, **kwargs)


def model_options(args: argparse.Namespace, model: str) -> dict:
    """The model options given on the command line (name -> JSON value; tuples as lists) for the
    registered ``model``; a flag it does not declare is a one-line ValueError."""
    declared = {field.name: field for field in MODELS.lookup(model).options.fields()}
    given = {}
    for name, declarations in declared_options().items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in declared:
            if name in GUIDE_FLAGS:
                continue
            flags = ", ".join(field.flag for field in declared.values()) or "none"
            raise ValueError(f"{model} has no option {declarations[0][1].flag} (its options: {flags})")
        given[name] = list(value) if isinstance(value, (list, tuple)) else value
    return given


def option_checks() -> dict[str, tuple]:
    """Option name -> (low, positive) of the range-checked model options, for the checks of the
    command line before any work."""
    return {name: (declarations[0][1].low, declarations[0][1].positive)
            for name, declarations in declared_options().items()
            if declarations[0][1].low is not None or declarations[0][1].positive}
