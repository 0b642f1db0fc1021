"""The experiments, one module each with ``run(out, *, quick, seed, device, progress) -> dict``
(registered by name in :data:`dlvm.experiments.EXPERIMENTS`)."""
