"""The objective the engine minimises: a Pyro ELBO bound to a model and a guide.

:class:`Objective` calls ``elbo.loss_and_grads(model, guide, *args, **kwargs)`` exactly as
:meth:`pyro.infer.SVI.step` does, and finds the parameters wherever they live: Pyro's global param
store (``pyro.param``, AutoGuides), PyroModules with module-local parameters, and plain
``nn.Module`` parameters of a model or guide that is a module. :class:`RowScale` scales the sites
inside the rows' plate by N / B, so a minibatch of B of N rows is an unbiased estimate of the
full-data ELBO (eq. 6.7) for any model whose rows live in a plate of that name.
"""
from __future__ import annotations

import math
import warnings

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import TraceEnum_ELBO
from pyro.poutine.messenger import Messenger

from ..models.sites import in_plate, is_enumerated, is_latent

from .elbos import ModuleJit, make_elbo, unwrapped


class RowScale(Messenger):
    """Multiply the log-density of every sample site inside the plate ``plate`` by ``scale``.

    Counts the sites it scaled (``scaled``), so a minibatch fit can tell a model without a plate of
    that name from one whose rows are scaled.
    """

    def __init__(self, plate: str, scale: float):
        super().__init__()
        self.plate, self.scale, self.scaled = plate, scale, 0

    def _process_message(self, msg):
        if msg["type"] == "sample" and in_plate(msg, self.plate):
            msg["scale"] = msg["scale"] * self.scale
            self.scaled += 1


class _SiteRecorder(Messenger):
    """Record the names of the latent sites a model or guide draws, and which are enumerated."""

    def __init__(self):
        super().__init__()
        self.latent, self.enumerated = set(), set()

    def _postprocess_message(self, msg):
        if is_latent(msg):
            self.latent.add(msg["name"])
            if is_enumerated(msg):
                self.enumerated.add(msg["name"])


def _summed_sites(model_sites: _SiteRecorder, guide_sites: _SiteRecorder) -> list[str]:
    """Sites that only an enumerating ELBO treats right: enumerated in the model and not drawn by
    the guide, or enumerated in the guide."""
    return sorted((model_sites.enumerated - guide_sites.latent) | guide_sites.enumerated)


class Objective:
    """``elbo`` on (``model``, ``guide``), with the parameters found so far.

    ``elbo`` is a Pyro ELBO instance, a name or None (the default: Trace_ELBO, or TraceEnum_ELBO
    when the model or guide marks sites for enumeration, found on the first step). An explicit
    ELBO that would sample sites marked for enumeration is a one-line error.
    """

    def __init__(self, model, guide, elbo=None, *, num_particles: int = 1, alpha: float | None = None,
                 max_plate_nesting=None):
        self.model, self.guide = model, guide
        self.max_plate_nesting = max_plate_nesting or getattr(model, "max_plate_nesting", math.inf)
        self.chosen = elbo is None
        self.elbo = make_elbo(elbo or "trace", num_particles=num_particles, alpha=alpha,
                              max_plate_nesting=self.max_plate_nesting)
        self._checked = self.compiled or isinstance(unwrapped(self.elbo), TraceEnum_ELBO)
        self._params: dict[int, tuple[str, torch.Tensor]] = {}
        self._trainable = None
        for owner, module in (("model", model), ("guide", guide)):
            if isinstance(module, torch.nn.Module):
                for name, p in module.named_parameters():
                    self._params.setdefault(id(p), (f"{owner}.{name}", p))

    @property
    def compiled(self) -> bool:
        """Whether the loss is replayed from a compiled graph (Python handlers run only when it compiles)."""
        return isinstance(self.elbo, ModuleJit)

    @property
    def name(self) -> str:
        return type(unwrapped(self.elbo)).__name__

    def parameters(self) -> list[torch.Tensor]:
        """Every trainable parameter found so far (module parameters, then param sites)."""
        if self._trainable is None or self._trainable[0] != len(self._params):
            self._trainable = (len(self._params), [p for _, p in self._params.values() if p.requires_grad])
        return self._trainable[1]

    def named_tensors(self) -> dict[str, torch.Tensor]:
        """{name: trained tensor} (unconstrained where Pyro constrains it) of every parameter found."""
        return {name: p for name, p in self._params.values()}

    def store_parameters(self) -> dict[str, torch.Tensor]:
        """{name: unconstrained tensor} of the parameters found that live in Pyro's param store."""
        store = pyro.get_param_store()
        return {name: p for name, p in self._params.values() if name in store and store._params.get(name) is p}

    def named_parameters(self) -> dict[str, torch.Tensor]:
        """{name: constrained value} of every parameter found (param-store names for ``pyro.param``)."""
        in_store = self.store_parameters()
        store = pyro.get_param_store()
        return {name: (store.get_param(name) if name in in_store else p).detach() for name, p in self._params.values()}

    def discover(self, args, kwargs, scale: RowScale | None = None) -> None:
        """Run the loss once (no gradients) so that lazily built parameters exist."""
        with torch.no_grad(), poutine.block():
            self.loss(args, kwargs, scale)

    def loss_and_grads(self, args, kwargs, scale: RowScale | None = None) -> float:
        """One ELBO estimate of -log-evidence, its gradients in the parameters' ``.grad``."""
        if not self._checked:
            return self._first_step(args, kwargs, scale)
        return self._call("loss_and_grads", self.model, self.guide, args, kwargs, scale)

    def loss(self, args, kwargs, scale: RowScale | None = None) -> float:
        return self._call("loss", self.model, self.guide, args, kwargs, scale)

    def _call(self, method, model, guide, args, kwargs, scale) -> float:
        with poutine.trace(param_only=True) as capture:
            if scale is None:
                loss = getattr(self.elbo, method)(model, guide, *args, **kwargs)
            else:
                with scale:
                    loss = getattr(self.elbo, method)(model, guide, *args, **kwargs)
        for name, site in capture.trace.nodes.items():
            value = site["value"]
            # pyro.param values point to their unconstrained tensor; a module's nn.Parameter is its own
            unconstrained = value.unconstrained() if hasattr(value, "unconstrained") else value
            self._params.setdefault(id(unconstrained), (name, unconstrained))
        return float(loss)

    def _first_step(self, args, kwargs, scale) -> float:
        """The first step, watching which sites the model and guide draw or enumerate."""
        rng = pyro.util.get_rng_state()
        model_sites, guide_sites = _SiteRecorder(), _SiteRecorder()
        with warnings.catch_warnings():
            # Pyro's hint about sites the guide lacks: enumerated ones get a clear answer below
            warnings.filterwarnings("ignore", "Found vars in model but not guide")
            loss = self._call("loss_and_grads", model_sites(self.model), guide_sites(self.guide), args, kwargs, scale)
        summed = _summed_sites(model_sites, guide_sites)
        self._checked = True
        if not summed:
            return loss
        if not self.chosen:
            raise ValueError(
                f"{', '.join(summed)} {'is' if len(summed) == 1 else 'are'} marked for enumeration, which "
                f"{self.name} does not do (it would draw them instead): use elbo='traceenum' or leave elbo unset"
            )
        for p in self.parameters():  # start again with the enumerating estimator
            p.grad = None
        pyro.util.set_rng_state(rng)
        self.elbo = TraceEnum_ELBO(num_particles=unwrapped(self.elbo).num_particles, max_plate_nesting=self.max_plate_nesting)
        return self.loss_and_grads(args, kwargs, scale)
