"""Registries: name -> entry tables with one lookup rule and one error message.

Every table dlvm looks names up in (models, guides, encoders, ELBOs, optimizers, experiments,
data sets, likelihoods, baselines) is a :class:`Registry`: a dict whose :meth:`Registry.lookup`
refuses an unknown name with the one line ``unknown KIND 'x'; choose one of: a, b, c``.
"""
from __future__ import annotations

from collections.abc import Iterable


class Registry(dict):
    """A name -> entry table of one ``kind`` ("model", "guide", ...); the order of insertion is the
    order listed to the user."""

    def __init__(self, kind: str, entries=(), **named):
        super().__init__(entries, **named)
        self.kind = kind

    @classmethod
    def of(cls, kind: str, declared: Iterable) -> Registry:
        """The registry of objects that declare their own ``name`` (model classes, say); a name
        declared twice is an error."""
        registry = cls(kind)
        for entry in declared:
            if entry.name in registry:
                raise ValueError(f"{kind} {entry.name!r} is declared twice")
            registry[entry.name] = entry
        return registry

    def lookup(self, name: str):
        """The entry called ``name``; a one-line ValueError naming the choices otherwise."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self)}")
        return self[name]
