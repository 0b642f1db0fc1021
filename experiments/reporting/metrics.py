"""Metrics shared by the experiments: clustering agreement, label alignment, reconstruction error."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score


def kmeans_ari(features, labels, k: int | None = None, seed: int = 0, n_init: int = 10) -> float:
    """Adjusted Rand index between k-means clusters of ``features`` (N, F) and ``labels`` (N,).

    k defaults to the number of distinct labels; k-means keeps the best of ``n_init`` starts.
    """
    features = np.asarray(features, dtype=np.float64).reshape(len(labels), -1)
    k = len(np.unique(labels)) if k is None else k
    clusters = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(features)
    return float(adjusted_rand_score(labels, clusters))


def mean_squared_error(x, reference) -> float:
    """Mean over all entries of (x - reference)^2."""
    return float(np.mean((np.asarray(x, dtype=np.float64) - np.asarray(reference, dtype=np.float64)) ** 2))


def align_labels(labels, reference, k: int) -> np.ndarray:
    """Relabel ``labels`` (ints in 0..k-1) to best match ``reference``: the permutation that
    maximises the number of agreeing entries (Hungarian algorithm on the k x k confusion matrix)."""
    labels, reference = np.asarray(labels), np.asarray(reference)
    confusion = np.zeros((k, k))
    np.add.at(confusion, (labels, reference), 1)
    rows, cols = linear_sum_assignment(-confusion)
    mapping = np.empty(k, dtype=int)
    mapping[rows] = cols
    return mapping[labels]


def label_agreement(labels, reference, k: int) -> float:
    """Share of entries on which two labelings agree after :func:`align_labels`."""
    return float((align_labels(labels, reference, k) == np.asarray(reference)).mean())


def volatility_order(variances) -> np.ndarray:
    """Permutation sorting regimes from the lowest to the highest volatility: new label i is old
    label order[i]."""
    return np.argsort(np.asarray(variances).reshape(len(variances), -1).sum(-1), kind="stable")


def relabel(labels, order) -> np.ndarray:
    """Labels under the permutation ``order`` of :func:`volatility_order`."""
    inverse = np.empty(len(order), dtype=int)
    inverse[np.asarray(order)] = np.arange(len(order))
    return inverse[np.asarray(labels)]
