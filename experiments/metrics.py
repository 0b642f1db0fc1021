"""Metrics shared by the experiments (clustering agreement, reconstruction error)."""
from __future__ import annotations

import numpy as np
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
