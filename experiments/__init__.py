"""Data sets, experiments, metrics, plots and the command line.

Every experiment is a module with ``run(out, *, quick, seed, device, progress) -> dict`` that
writes its figures (``out/figures/*.png``) and tables (``out/*.csv``) and returns a summary: the
key numbers, the files it wrote and a two-sentence ``caption`` saying what it shows. ``quick``
runs in seconds on small data (the test suite runs every experiment that way).
"""
from __future__ import annotations

from importlib import import_module

from ..models.registry import Registry

#: experiment name -> (module under dlvm.experiments.studies, one-line description)
EXPERIMENTS: Registry = Registry("experiment", {
    "vae-digits": ("vae_digits", "VAE on scikit-learn digits: test ELBO/IWAE-500, latent manifold (§6.5)"),
    "vrae-ecg": ("vrae_ecg", "VRAE on ECG5000 heartbeats and 20-stock return windows: ELBO, k-means ARI (§6.6.1.1)"),
    "regimes": ("regimes", "S&P 500 volatility regimes: GMM and Gaussian HMMs vs scikit-learn and hmmlearn "
                "(Figure 6.5)"),
    "estimators": ("estimators", "ELBO gradient estimators: variance, SNR and cost per guide; ELBO vs exact "
                   "log p(x) and the gap (§6.4.3-6.4.4)"),
    "fa-vs-pca": ("fa_vs_pca", "FA vs PPCA: cross-validated choice of the number of factors (Figs 6.2, 6.3)"),
    "fa-covariance": ("fa_covariance", "factor models of 20 stocks' daily returns vs sample and Ledoit-Wolf "
                      "covariance (§6.1)"),
    "timevae-stocks": ("timevae_stocks", "TimeVAE, VAE, VRAE on TimeGAN stocks, TimeVAE stockv sets, sines: "
                       "TimeGAN scores (§6.6.1.2)"),
    "diagnostics": ("bayesian_fa", "Bayesian FA of six stocks by NUTS and SVI with ArviZ; PSIS k-hat of an "
                    "amortized guide"),
    "anomaly": ("anomaly", "anomaly scores on ECG5000 (AUROC/AUPRC vs scikit-learn) and S&P 500 days; latent "
                "features for classification (§6.7)"),
    "forecast": ("forecast", "forecasts of held-out window ends by FA, HMM, VRAE, TimeVAE vs naive baselines: CRPS, "
                 "interval coverage (§6.7)"),
    "encoders": ("encoders", "GRU, LSTM, conv and Transformer encoders (and a Transformer VRAE decoder): ARI, test "
                 "IWAE on ECG5000, TimeGAN scores on stocks, time per epoch (§6.6.1.1)"),
    "dlm": ("dlm", "random-walk local level and AR(p) blocks in the interpretable TimeVAE: decomposition of "
            "synthetic series from known components (§6.6.1.2)"),
})


def get_experiment(name: str):
    """The module of the experiment called ``name``."""
    return import_module(f".studies.{EXPERIMENTS.lookup(name)[0]}", __name__)
