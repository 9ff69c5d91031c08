"""Offline data sets: nothing here touches the network."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Split:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    def __repr__(self) -> str:
        return (f"Split(X_train {self.X_train.shape}, y_train {self.y_train.shape}, "
                f"X_test {self.X_test.shape}, y_test {self.y_test.shape})")


def load_digits(test_size: float = 0.25, seed: int = 0, images: bool = False) -> Split:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), scaled to [0, 1].

    The split is stratified and fixed by ``seed`` (default 0: the course's split).
    ``images=True`` gives X as (N, 1, 8, 8) for convolutions, else (N, 64).
    """
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    d = _load()
    X = (d.images / 16.0).astype(np.float64)
    X = X[:, None, :, :] if images else X.reshape(len(X), -1)
    y = d.target.astype(np.int64)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)
    return Split(X_tr, y_tr, X_te, y_te)


def batches(n: int, batch_size: int, rng: np.random.Generator, shuffle: bool = True):
    """Index arrays of mini-batches over ``range(n)`` (the same ones feed NumPy and torch)."""
    order = rng.permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]
