"""Data sets, experiments, metrics, plots and the command line.

Every experiment is a module with ``run(out, *, quick, seed, device, progress) -> dict`` that
writes its figures (``out/figures/*.png``) and tables (``out/*.csv``) and returns a summary: the
key numbers, the files it wrote and a two-sentence ``caption`` saying what it shows. ``quick``
runs in seconds on small data (the test suite runs every experiment that way).
"""
from __future__ import annotations

from importlib import import_module

#: experiment name -> (module under dlvm.experiments, one-line description)
EXPERIMENTS: dict[str, tuple[str, str]] = {}
EXPERIMENTS["vae-digits"] = ("vae_digits", "VAE on scikit-learn digits: test ELBO/IWAE-500, latent manifold (§6.5)")
EXPERIMENTS["vrae-ecg"] = ("vrae_ecg", "VRAE on ECG5000 heartbeats and 20-stock return windows: ELBO, k-means ARI (§6.6.1.1)")
EXPERIMENTS["regimes"] = ("regimes", "S&P 500 volatility regimes: GMM and Gaussian HMMs vs scikit-learn and hmmlearn (Figure 6.5)")
EXPERIMENTS["estimators"] = ("estimators", "ELBO gradient estimators: variance, SNR and cost per guide; ELBO vs exact log p(x) and the gap (§6.4.3-6.4.4)")


def get_experiment(name: str):
    """The module of the experiment called ``name``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)}")
    return import_module(f"dlvm.experiments.{EXPERIMENTS[name][0]}")

EXPERIMENTS["fa-vs-pca"] = ("fa_vs_pca", "FA vs PPCA: cross-validated choice of the number of factors (Figs 6.2, 6.3)")
EXPERIMENTS["fa-covariance"] = ("fa_covariance", "factor models of 20 stocks' daily returns vs sample and Ledoit-Wolf covariance (§6.1)")
EXPERIMENTS["timevae-stocks"] = ("timevae_stocks", "TimeVAE, VAE, VRAE on TimeGAN stocks, TimeVAE stockv sets, sines: TimeGAN scores (§6.6.1.2)")
EXPERIMENTS["diagnostics"] = ("bayesian_fa", "Bayesian FA of six stocks by NUTS and SVI with ArviZ; PSIS k-hat of an amortized guide")
EXPERIMENTS["anomaly"] = ("anomaly", "anomaly scores on ECG5000 (AUROC/AUPRC vs scikit-learn) and S&P 500 days; latent features for classification (§6.7)")
EXPERIMENTS["forecast"] = ("forecast", "forecasts of held-out window ends by FA, HMM, VRAE, TimeVAE vs naive baselines: CRPS, interval coverage (§6.7)")
EXPERIMENTS["encoders"] = ("encoders", "GRU, LSTM, conv and Transformer encoders (and a Transformer VRAE decoder) on ECG5000: ARI, test IWAE, time per epoch (§6.6.1.1)")
EXPERIMENTS["dlm"] = ("dlm", "random-walk local level and AR(p) blocks in the interpretable TimeVAE: decomposition of synthetic series from known components (§6.6.1.2)")
