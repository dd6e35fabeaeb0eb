"""Face-embedding maths: L2 normalisation and cosine similarity."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

# Norms below this are treated as zero: dividing by them would only amplify noise (or produce inf).
_EPSILON = 1e-12


def l2_normalize(v: npt.ArrayLike, axis: int = -1) -> npt.NDArray[np.floating[Any]]:
    """Scale `v` to unit L2 norm along `axis`. Zero vectors stay zero instead of becoming NaN."""
    array = np.asarray(v)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    norm = np.linalg.norm(array, axis=axis, keepdims=True)
    result: npt.NDArray[np.floating[Any]] = array / np.maximum(norm, _EPSILON).astype(array.dtype)
    return result


def cosine_similarity(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Cosine of the angle between two 1-D vectors, in [-1, 1]; 0.0 if either is a zero vector."""
    left = np.asarray(a, dtype=np.float64).reshape(-1)
    right = np.asarray(b, dtype=np.float64).reshape(-1)
    if left.shape != right.shape:
        raise ValueError(f"vectors differ in length: {left.shape[0]} vs {right.shape[0]}")
    similarity = float(np.dot(l2_normalize(left), l2_normalize(right)))
    # Rounding can push |cos| a hair past 1, which would break arccos or threshold tests downstream.
    return float(np.clip(similarity, -1.0, 1.0))
