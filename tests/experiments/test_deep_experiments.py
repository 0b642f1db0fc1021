"""The VAE and VRAE experiments in quick mode: files, summary keys, and the key numbers."""
import json

import pytest

from dlvm.experiments import EXPERIMENTS, get_experiment
from dlvm.experiments.reporting.plots import check_figure


@pytest.fixture(scope="module")
def vrae_summary(tmp_path_factory):
    out = tmp_path_factory.mktemp("vrae-ecg")
    return out, get_experiment("vrae-ecg").run(out, quick=True)


def check_files(out, summary):
    json.dumps(summary)
    assert summary["caption"].count(". ") >= 1
    for name in summary["files"]:
        assert (out / name).is_file(), name
        if name.endswith(".png"):
            check_figure(out / name)  # neither blank nor degenerate


def test_vae_digits_quick(tmp_path):
    summary = get_experiment("vae-digits").run(tmp_path, quick=True)
    check_files(tmp_path, summary)
    assert summary["iwae_samples"] >= 500
    assert summary["test_iwae"] >= summary["test_elbo"]
    assert summary["test_elbo"] > summary["untrained_test_elbo"] + 10


def test_vrae_ecg_quick(vrae_summary):
    out, summary = vrae_summary
    check_files(out, summary)
    assert summary["ecg_latent_kmeans_ari"] > 0.3
    assert 0.3 < summary["ecg_raw_kmeans_ari"] < 0.6
    assert summary["ecg_test_iwae"] >= summary["ecg_test_elbo"]


def test_registered():
    assert {"vae-digits", "vrae-ecg"} <= set(EXPERIMENTS)


def test_timevae_stocks_quick(tmp_path):
    summary = get_experiment("timevae-stocks").run(tmp_path, quick=True)
    check_files(tmp_path, summary)
    models = {(row["dataset"], row["model"]) for row in summary["scores"]}
    for model in ("TimeVAE", "interpretable TimeVAE", "VAE", "VRAE", "real data (train on real)",
                  "TimeGAN (published)"):
        assert ("stocks", model) in models
    assert ("stockv", "TimeVAE") in models and ("sines", "TimeVAE") in models
    rows = {(row["dataset"], row["model"]): row for row in summary["scores"]}
    # the published rows carry Diffusion-TS's Table 1 (ICLR 2024) as published
    assert rows[("stocks", "TimeGAN (published)")]["discriminative"] == 0.102
    assert rows[("stocks", "Diffusion-TS (published)")]["discriminative"] == 0.067
    assert rows[("stocks", "real data (published)")]["predictive"] == 0.036
    for row in summary["scores"]:
        if row["discriminative"] is not None:
            assert 0 <= row["discriminative"] <= 0.5
