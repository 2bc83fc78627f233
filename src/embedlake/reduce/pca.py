"""PCA fitted per release: enough components for a share of the variance, or a fixed number.

Saved as plain NumPy arrays (mean, components), so it loads without pickle and on any version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedlake.encoders import Vectors, normalise
from embedlake.errors import InputError


class PcaReducer:
    def __init__(self, mean: np.ndarray, components: np.ndarray, explained: float) -> None:
        self.mean = mean.astype(np.float32)
        self.components = np.ascontiguousarray(components, dtype=np.float32)
        self.explained = float(explained)  # share of variance the kept components explain

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(
        cls, vectors: np.ndarray, *, variance: float = 0.95, components: int = 0, seed: int = 0
    ) -> PcaReducer:
        # imported here: scikit-learn (with SciPy and pandas) is over a second of CPU to import, and
        # every process that serves a release loads this module without fitting anything
        from sklearn.decomposition import PCA

        if len(vectors) < 3:
            raise InputError(f"PCA needs at least 3 vectors, got {len(vectors)}")
        k = components or variance
        if components > min(vectors.shape):
            raise InputError(f"cannot keep {components} components of {vectors.shape} vectors")
        pca = PCA(
            n_components=k, svd_solver="full" if components == 0 else "auto", random_state=seed
        )
        pca.fit(vectors)
        return cls(pca.mean_, pca.components_, float(np.sum(pca.explained_variance_ratio_)))

    def transform(self, vectors: np.ndarray) -> Vectors:
        return normalise((np.asarray(vectors, dtype=np.float32) - self.mean) @ self.components.T)

    def save(self, folder: Path) -> None:
        np.save(folder / "pca_mean.npy", self.mean)
        np.save(folder / "pca_components.npy", self.components)
        (folder / "pca_explained.txt").write_text(repr(self.explained), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> PcaReducer:
        return cls(
            np.load(folder / "pca_mean.npy"),
            np.load(folder / "pca_components.npy"),
            float((folder / "pca_explained.txt").read_text(encoding="utf-8")),
        )
