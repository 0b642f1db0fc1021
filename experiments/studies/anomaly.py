"""Latent models at work (§6.7): anomaly detection on ECG5000 and the S&P 500, latent features.

ECG5000: the 500 shipped heartbeats (class 1 normal, 2-5 abnormal). Each split fits every model
on a random 60 % of the normal beats, without labels, and scores the other normal beats and all
abnormal ones by their negative log-likelihood (exact for FA, PPCA and the GMM; IWAE-K for the
VAE, VRAE and TimeVAE, with :func:`dlvm.inference.anomaly.anomaly_scores`). AUROC and AUPRC
(abnormal = positive) against scikit-learn detectors on the same split: IsolationForest, PCA
reconstruction error, the mean distance to the 5 nearest training beats and a one-class SVM.
A latent model's score is also placed among the training beats' own (its percentile): flagging
beats above the 95th percentile flags some share of held-out normal and of abnormal beats.

Markets: the days of the S&P 500 that an exact likelihood finds least likely: Factor Analysis
of the 20 stocks' daily returns (a day is a row of 20 returns), a two-regime GMM of the index
returns, and a two-regime HMM of them (a day scored by its one-step-ahead -log p(x_t | x_<t)).
The 1 % least likely days are marked on the index's price chart and counted per year
(``market_years.csv``; the days themselves in ``market_least_likely_days.csv``), and so are the
least likely 20-day windows of the index returns (starting every 5 days) under FA of the windows.

Features: FA, the VAE and the VRAE fitted on all 500 beats without labels; a logistic regression on their
posterior means (:func:`dlvm.inference.features.encode`) against one on the raw beats, for the
five classes, scored by balanced accuracy of 5-fold cross-validated predictions.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import NullFormatter
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from ...guides import pair
from ...inference import fit
from ...inference.anomaly import anomaly_scores, percentiles
from ...inference.features import encode
from ...models import build_model

from ..data.sets import ecg5000, log_returns, sp500_index, sp500_stocks
from ..reporting.plots import figure, save_figure
from .regimes import fit_regime_model
from ..data.windows import windows

NORMAL = 1
TRAIN_FRACTION = 0.6
LATENT_DIM = 8
TOP_FRACTION = 0.01  # the least likely 1 % of days
WINDOW, WINDOW_STRIDE = 20, 5  # 20-day windows of the index returns, starting every 5 days
FLAG_PERCENTILE = 95.0  # a beat is flagged above this percentile of the training beats' scores


@dataclass(frozen=True)
class Detector:
    """A registered model fitted as an anomaly detector: registry name, options, guide, whether it
    reads beats as sequences (N, T, 1), and fit options in quick and full mode."""

    model: str
    options: dict
    guide: str
    sequence: bool
    quick: dict
    full: dict = field(default_factory=dict)


EXACT_FIT = {"optimizer": "lbfgs", "epochs": 20}
DETECTORS = {
    "FA": Detector("fa", {"latent_dim": LATENT_DIM}, "exact", False, EXACT_FIT),
    "PPCA": Detector("ppca", {"latent_dim": LATENT_DIM}, "exact", False, EXACT_FIT),
    "GMM": Detector("gmm", {"components": 2, "covariance": "full", "restarts": 2}, "exact", False, EXACT_FIT,
                    {"optimizer": "lbfgs", "epochs": 50}),
    "VAE": Detector("vae", {"latent_dim": LATENT_DIM, "hidden": [64]}, "amortized", False,
                    {"epochs": 80, "batch_size": 50, "lr": 1e-2}, {"epochs": 300, "batch_size": 50, "lr": 3e-3}),
    "VRAE": Detector("vrae", {"latent_dim": LATENT_DIM, "hidden": [32]}, "amortized", True,
                     {"epochs": 20, "batch_size": 50, "lr": 1e-2, "clip_norm": 10.0},
                     {"epochs": 150, "batch_size": 50, "lr": 3e-3, "clip_norm": 10.0}),
    "TimeVAE": Detector("timevae", {"latent_dim": LATENT_DIM, "hidden": [16, 32]}, "amortized", True,
                        {"epochs": 60, "batch_size": 50, "lr": 1e-3}, {"epochs": 300, "batch_size": 50, "lr": 1e-3}),
}
FEATURE_MODELS = ("FA", "VAE", "VRAE")  # whose posterior means feed the classifier
BASELINES = ("IsolationForest", "PCA reconstruction", "5-NN distance", "one-class SVM")


def fit_detector(spec: Detector, x_train: np.ndarray, *, quick: bool, seed: int, device: str = "cpu"):
    """Fit the detector's model on rows (N, T) (sequences: (N, T, 1)) -> (model_to_score, guide)."""
    x = x_train[..., None] if spec.sequence else x_train
    model = build_model(spec.model, x.shape[1:], spec.options)
    if spec.guide == "exact":
        model = model.double()
    hidden = {"hidden": spec.options["hidden"]} if "hidden" in spec.options and spec.model != "timevae" else {}
    trained, guide = pair(model, spec.guide, x.shape[1:], **hidden)
    options = spec.quick if quick or not spec.full else spec.full
    fit(trained, guide, x, progress=False, seed=seed, device=device, **options)
    return trained.cpu(), guide.cpu()


def baseline_scores(x_train: np.ndarray, x_test: np.ndarray, seed: int, components: int = LATENT_DIM) -> dict:
    """Anomaly scores (B,) (higher = more anomalous) of scikit-learn detectors fitted on normal rows
    (N, D); PCA keeps ``components`` components."""
    pca = PCA(components, random_state=seed).fit(x_train)
    distances, _ = NearestNeighbors(n_neighbors=5).fit(x_train).kneighbors(x_test)
    return {
        "IsolationForest": -IsolationForest(n_estimators=200, random_state=seed).fit(x_train).score_samples(x_test),
        "PCA reconstruction": ((x_test - pca.inverse_transform(pca.transform(x_test))) ** 2).sum(1),
        "5-NN distance": distances.mean(1),
        "one-class SVM": -OneClassSVM(nu=0.05, gamma="scale").fit(x_train).score_samples(x_test),
    }


def ecg_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: a random TRAIN_FRACTION of the normal beats; the rest and every abnormal beat."""
    normal = np.random.default_rng(seed).permutation(np.flatnonzero(labels == NORMAL))
    cut = int(TRAIN_FRACTION * len(normal))
    return normal[:cut], np.r_[normal[cut:], np.flatnonzero(labels != NORMAL)]


@dataclass
class SplitResult:
    """Scores of every method on one split: ``abnormal`` (B,) bool, ``scores`` method -> (B,),
    ``estimator`` method -> how the score was computed, ``standard_error`` method -> median SE,
    ``percentile`` latent model -> (B,) percentiles of the scores among the training beats' own."""

    abnormal: np.ndarray
    scores: dict
    estimator: dict
    standard_error: dict
    percentile: dict = field(default_factory=dict)


def score_split(x: np.ndarray, labels: np.ndarray, seed: int, *, quick: bool, device: str = "cpu",
                iwae_samples: int = 100) -> SplitResult:
    """Fit every detector and baseline on one split of the beats x (N, T) and score its test beats."""
    train, test = ecg_split(labels, seed)
    result = SplitResult(labels[test] != NORMAL, baseline_scores(x[train], x[test], seed), {}, {})
    result.estimator.update({name: "scikit-learn" for name in result.scores})
    for name, spec in DETECTORS.items():
        torch.manual_seed(seed)
        model, guide = fit_detector(spec, x[train], quick=quick, seed=seed, device=device)
        train_rows, test_rows = (x[i][..., None] if spec.sequence else x[i] for i in (train, test))
        found = anomaly_scores(model, guide, test_rows, num_samples=iwae_samples)
        reference = anomaly_scores(model, guide, train_rows, num_samples=iwae_samples)
        result.scores[name], result.estimator[name] = found.nll, found.label
        result.standard_error[name] = float(np.median(found.se))
        result.percentile[name] = percentiles(found.nll, reference.nll)
    return result


def flagged(results: list[SplitResult], name: str, abnormal: bool, level: float = FLAG_PERCENTILE) -> float | None:
    """Share of the held-out normal (or abnormal) beats scored above the ``level`` percentile of
    the training beats, mean over splits (None for a method without percentiles)."""
    if name not in results[0].percentile:
        return None
    return float(np.mean([(r.percentile[name][r.abnormal == abnormal] > level).mean() for r in results]))


def auc_table(results: list[SplitResult]) -> pd.DataFrame:
    """AUROC and AUPRC per method, mean and sd over splits (abnormal = positive), best AUROC first."""
    rows = []
    for name in results[0].scores:
        auroc = [roc_auc_score(r.abnormal, r.scores[name]) for r in results]
        auprc = [average_precision_score(r.abnormal, r.scores[name]) for r in results]
        rows.append({"method": name, "score": results[0].estimator[name],
                     "auroc_mean": np.mean(auroc), "auroc_sd": np.std(auroc, ddof=1) if len(auroc) > 1 else 0.0,
                     "auprc_mean": np.mean(auprc), "auprc_sd": np.std(auprc, ddof=1) if len(auprc) > 1 else 0.0,
                     "median_iwae_se": np.median([r.standard_error[name] for r in results])
                     if name in results[0].standard_error else None,
                     "normal_flagged_p95": flagged(results, name, False),
                     "abnormal_flagged_p95": flagged(results, name, True)})
    return pd.DataFrame(rows).sort_values("auroc_mean", ascending=False, ignore_index=True)


def _roc_lines(ax, result: SplitResult, table: pd.DataFrame, labels: bool) -> None:
    for name in table["method"]:
        fpr, tpr, _ = roc_curve(result.abnormal, result.scores[name])
        label = f"{name} ({table.set_index('method').loc[name, 'auroc_mean']:.3f})" if labels else None
        ax.plot(fpr, tpr, "--" if name in BASELINES else "-", linewidth=1.4, label=label)
    ax.set_xlabel("false-positive rate (normal beats flagged)")
    ax.set_ylabel("true-positive rate (abnormal beats flagged)")


def roc_figure(result: SplitResult, table: pd.DataFrame, out: Path) -> str:
    """ROC curves of every method on the first split (latent models solid, baselines dashed),
    whole and zoomed on the top-left corner; the legend gives the AUROC averaged over splits."""
    fig, (whole, corner) = figure(ncols=2, width=5.5, height=4.8)
    _roc_lines(whole, result, table, labels=True)
    whole.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
    whole.set_title("ECG5000 ROC, first split")
    whole.legend(fontsize=7.5, loc="lower right", title="AUROC, mean over splits", title_fontsize=7.5)
    _roc_lines(corner, result, table, labels=False)
    corner.set_xlim(0, 0.2)
    corner.set_ylim(0.8, 1.005)
    corner.set_title("the top-left corner")
    return save_figure(fig, out, "ecg_roc")


# ------------------------------------------------------------------------------------- markets
def least_likely_days(nll: pd.Series, fraction: float = TOP_FRACTION) -> pd.Series:
    """The ``fraction`` of days with the highest negative log-likelihood, most anomalous first."""
    return nll.sort_values(ascending=False).iloc[: max(1, int(round(fraction * len(nll))))]


def fa_scores(rows: np.ndarray, latent_dim: int, seed: int, device: str = "cpu") -> np.ndarray:
    """Exact negative log-likelihood (N,) of rows (N, D) under FA fitted to them by L-BFGS."""
    fa, guide = pair(build_model("fa", rows.shape[1:], {"latent_dim": latent_dim}).double(), "exact", rows.shape[1:])
    fit(fa, guide, rows, optimizer="lbfgs", epochs=20, progress=False, seed=seed, device=device)
    return anomaly_scores(fa.cpu(), guide.cpu(), rows).nll


def window_scores(seed: int, device: str = "cpu") -> pd.Series:
    """Exact negative log-likelihood of every WINDOW-day window of the index returns (starts
    WINDOW_STRIDE days apart) under FA (2 factors) of the windows as rows, indexed by first day."""
    returns = log_returns(sp500_index(), percent=True)
    cut = windows(returns.to_numpy(), WINDOW, WINDOW_STRIDE)[..., 0]
    return pd.Series(fa_scores(cut, 2, seed, device), index=returns.index[::WINDOW_STRIDE][: len(cut)])


def market_scores(seed: int, device: str = "cpu") -> dict[str, pd.Series]:
    """Exact negative log-likelihood per day: FA (3 factors) of the 20 stocks' returns, a two-regime
    GMM of the index returns, and a two-regime HMM's one-step-ahead -log p(x_t | x_<t); each a
    Series indexed by date."""
    stocks = log_returns(sp500_stocks(), percent=True)
    index = log_returns(sp500_index(), percent=True)
    x = torch.tensor(index.to_numpy()[:, None], dtype=torch.float64)
    scores = {"FA, 20 stocks": pd.Series(fa_scores(stocks.to_numpy(), 3, seed, device), index=stocks.index)}
    for kind, data in (("gmm", x), ("hmm", x[None])):
        model, _ = fit_regime_model(kind, data, 2, seed=seed, restarts=2, device=device)
        model, guide = pair(model, "enum", tuple(data.shape[1:]))
        scores[f"{kind.upper()}, index"] = pd.Series(anomaly_scores(model, guide, data).nll, index=index.index)
    return scores


def year_counts(days: pd.Series, span_years: float, years=(2008, 2020)) -> dict:
    """How many of ``days`` fall in each of ``years``, the busiest year, and the count a year would
    get if the days fell at random over data spanning ``span_years`` years."""
    counts = days.index.year.value_counts()
    return {**{str(y): int(counts.get(y, 0)) for y in years}, "busiest_year": int(counts.idxmax()),
            "busiest_count": int(counts.max()), "expected_per_year": len(days) / span_years}


def merged_spans(starts: pd.Index, days: pd.Index) -> list[tuple]:
    """The union of the WINDOW-day windows beginning at ``starts`` (trading ``days``), as
    (first day, last day) spans in time order."""
    spans: list[list] = []
    for first in sorted(days.get_loc(s) for s in starts):
        last = min(first + WINDOW - 1, len(days) - 1)
        if spans and first <= spans[-1][1] + 1:
            spans[-1][1] = max(spans[-1][1], last)
        else:
            spans.append([first, last])
    return [(days[a], days[b]) for a, b in spans]


def market_figure(prices: pd.Series, tops: dict[str, pd.Series], top_windows: pd.Series, out: Path) -> str:
    """The index's price (log scale) with each model's least likely days marked and the least
    likely WINDOW-day windows shaded."""
    fig, ax = figure(width=11, height=4.5)
    ax.plot(prices.index, prices.to_numpy(), color="black", linewidth=0.7, label="S&P 500")
    for i, (start, end) in enumerate(merged_spans(top_windows.index, prices.index)):
        ax.axvspan(start, end, color="tab:orange", alpha=0.3, linewidth=0, zorder=0,
                   label=f"FA, {WINDOW}-day windows: {len(top_windows)} least likely" if i == 0 else None)
    for (name, days), (colour, marker) in zip(tops.items(), (("tab:red", "o"), ("tab:blue", "v"), ("tab:green", "x"))):
        ax.scatter(days.index, prices.reindex(days.index).to_numpy(), s=22, color=colour, marker=marker,
                   alpha=0.7, zorder=3, label=f"{name}: {len(days)} least likely days")
    ax.set_yscale("log")
    levels = [v for v in (250, 500, 1000, 2000, 4000) if prices.min() / 1.2 <= v <= prices.max() * 1.2]
    ax.set_yticks(levels, [str(v) for v in levels])
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("index level (log scale)")
    ax.set_title(f"S&P 500 days and {WINDOW}-day windows with the lowest likelihood (top 1 %) under each model")
    ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, out, "market_anomalies")


# ------------------------------------------------------------------------------------ features
def balanced_accuracy(features: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Balanced accuracy of 5-fold cross-validated predictions of a standardised logistic regression
    with class weights inversely proportional to the class sizes."""
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # ECG5000's class 5 has 2 beats: fewer than folds, still predicted once each
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        predicted = cross_val_predict(classifier, features, labels, cv=folds)
    return float(balanced_accuracy_score(labels, predicted))


def feature_table(x: np.ndarray, labels: np.ndarray, *, quick: bool, seed: int, device: str = "cpu") -> pd.DataFrame:
    """Balanced accuracy on the raw beats and on the posterior means of each of FEATURE_MODELS
    (fitted on all beats without labels), with the encoding method."""
    rows = [{"features": f"raw beats ({x.shape[1]} steps)", "balanced_accuracy": balanced_accuracy(x, labels, seed),
             "encoding": "none"}]
    for name in FEATURE_MODELS:
        torch.manual_seed(seed)
        spec = DETECTORS[name]
        model, guide = fit_detector(spec, x, quick=quick, seed=seed, device=device)
        found = encode(model, guide, x[..., None] if spec.sequence else x)
        rows.append({"features": f"{name} posterior means ({found.mean.shape[1]} dims)",
                     "balanced_accuracy": balanced_accuracy(found.mean, labels, seed), "encoding": found.method})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- run
def _table_line(table: pd.DataFrame, name: str) -> str:
    row = table.set_index("method").loc[name]
    return f"{name} {row['auroc_mean']:.3f} ± {row['auroc_sd']:.3f}"


def _stand_out(markets: dict) -> str:
    """Under how many models each of 2008 and 2020 holds at least three times the least likely
    days (or windows) of a year at random."""
    counts = {y: sum(m[y] >= 3 * m["expected_per_year"] for m in markets.values()) for y in ("2008", "2020")}
    return (f"2008 stands out (at least 3 times a random year's count) under {counts['2008']} of the "
            f"{len(markets)} models and 2020 under {counts['2020']}")


def _caption(table: pd.DataFrame, splits: int, markets: dict, features: pd.DataFrame) -> str:
    best_model = table[~table["method"].isin(BASELINES)].iloc[0]["method"]
    best_base = table[table["method"].isin(BASELINES)].iloc[0]["method"]
    best = table.set_index("method").loc[best_model]
    fa, gmm, hmm = markets["FA, 20 stocks"], markets["GMM, index"], markets["HMM, index"]
    spans = markets[f"FA, {WINDOW}-day windows of the index"]
    raw, *latent = features["balanced_accuracy"]
    return (
        f"On ECG5000 ({splits} random splits, fit on 60 % of the normal beats) the best latent model by AUROC "
        f"is {_table_line(table, best_model)} against the best scikit-learn baseline {_table_line(table, best_base)}, "
        f"and above the {FLAG_PERCENTILE:.0f}th percentile of its training scores it flags "
        f"{best['normal_flagged_p95']:.0%} of the held-out normal and {best['abnormal_flagged_p95']:.0%} of the "
        f"abnormal beats; as features for the five classes, {' / '.join(FEATURE_MODELS)} posterior means give "
        f"balanced accuracy {' / '.join(f'{v:.3f}' for v in latent)} against {raw:.3f} for the raw beats. "
        f"Of the 1 % least likely S&P 500 days, 2008 / 2020 hold {fa['2008']} / {fa['2020']} under FA of the 20 "
        f"stocks (busiest year {fa['busiest_year']}, {fa['busiest_count']}), {gmm['2008']} / {gmm['2020']} under "
        f"a GMM and {hmm['2008']} / {hmm['2020']} under an HMM of the index, against "
        f"{fa['expected_per_year']:.1f} for a year at random, and {spans['2008']} / {spans['2020']} of the "
        f"{spans['days']} least likely {WINDOW}-day windows start there: {_stand_out(markets)}."
    )


def ecg_section(out: Path, x: np.ndarray, labels: np.ndarray, splits: int, *, quick: bool, seed: int,
                device: str = "cpu", progress: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Score ``splits`` random splits of the beats x (N, T); write the AUROC/AUPRC table and the ROC
    figure: (table, files for the report)."""
    results = []
    for s in range(splits):
        if progress:
            print(f"  ECG5000 split {s + 1}/{splits}", flush=True)
        results.append(score_split(x, labels, seed + s, quick=quick, device=device, iwae_samples=20 if quick else 200))
    table = auc_table(results)
    table.to_csv(out / "ecg_auc.csv", index=False)
    return table, ["ecg_auc.csv", roc_figure(results[0], table, out)]


def market_section(out: Path, seed: int, device: str = "cpu") -> tuple[dict, list[str]]:
    """Score the S&P 500 days and windows, write the per-year table, the day list and the chart:
    (counts per model, files for the report)."""
    prices = sp500_index()
    span_years = (prices.index[-1] - prices.index[0]).days / 365.25
    tops = {name: least_likely_days(values) for name, values in market_scores(seed, device).items()}
    top_windows = least_likely_days(window_scores(seed, device))
    markets = {name: {"days": len(days), **year_counts(days, span_years)} for name, days in tops.items()}
    markets[f"FA, {WINDOW}-day windows of the index"] = {"days": len(top_windows),
                                                        **year_counts(top_windows, span_years)}
    # the day-by-day list stays beside the report, which shows the counts per year
    pd.concat({**tops, "FA, windows (first day)": top_windows}, names=["model", "date"]).rename("nll").to_csv(
        out / "market_least_likely_days.csv")
    pd.DataFrame.from_dict(markets, orient="index").rename_axis("model").to_csv(out / "market_years.csv")
    return markets, ["market_years.csv", market_figure(prices, tops, top_windows, out)]


def run(out: Path, *, quick: bool, seed: int = 0, device: str = "cpu", progress: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    series, labels = ecg5000()
    x = series[:, ::2] if quick else series  # quick mode: every second sample (70 steps)
    splits = 2 if quick else 5
    table, files = ecg_section(out, x, labels, splits, quick=quick, seed=seed, device=device, progress=progress)

    markets, market_files = market_section(out, seed, device)
    files += market_files

    features = feature_table(x, labels, quick=quick, seed=seed, device=device)
    features.to_csv(out / "ecg_features.csv", index=False)
    files.append("ecg_features.csv")
    return {
        "splits": splits, "steps": int(x.shape[1]), "train_normal_beats": int(len(ecg_split(labels, seed)[0])),
        "auc": table.astype(object).where(table.notna(), None).to_dict("records"), "markets": markets,
        "features": features.to_dict("records"),
        "files": files, "caption": _caption(table, splits, markets, features),
    }
