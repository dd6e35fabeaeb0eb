"""Five-point face alignment to the ArcFace 112x112 template (similarity transform + warp)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

# Landmark positions (right eye, left eye, nose, right mouth corner, left mouth corner; image-left
# first) of the canonical 112x112 ArcFace crop that recognition models are trained on.
ARCFACE_TEMPLATE_112: npt.NDArray[np.float32] = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
ARCFACE_TEMPLATE_SIZE = 112


def _as_points(points: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 2:
        raise ValueError(f"{name} must have shape (N>=2, 2), got {array.shape}")
    return array


def similarity_transform(src_points: npt.ArrayLike, dst_points: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping
    `src_points` onto `dst_points`, as a 2x3 matrix M with dst ≈ M[:, :2] @ src + M[:, 2].

    Umeyama (1991): the optimal rotation comes from the SVD of the cross-covariance; the sign
    correction keeps it a proper rotation, because a mirrored face must not be "aligned" by a flip.
    """
    src = _as_points(src_points, "src_points")
    dst = _as_points(dst_points, "dst_points")
    if src.shape != dst.shape:
        raise ValueError(f"src_points {src.shape} and dst_points {dst.shape} differ in shape")

    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_centred = src - src_mean
    dst_centred = dst - dst_mean
    src_variance = float(np.mean(np.sum(src_centred**2, axis=1)))
    if src_variance <= np.finfo(np.float64).eps:
        raise ValueError("src_points are all the same point; no similarity transform is defined")

    covariance = dst_centred.T @ src_centred / src.shape[0]
    u, singular, vt = np.linalg.svd(covariance)
    signs = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        signs[-1] = -1.0
    rotation = u @ np.diag(signs) @ vt
    scale = float(np.sum(singular * signs)) / src_variance
    translation = dst_mean - scale * rotation @ src_mean

    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = translation
    return matrix


def align_face(
    image: npt.NDArray[np.uint8], landmarks: npt.ArrayLike, size: int = 112
) -> npt.NDArray[np.uint8]:
    """Warp `image` (HxWx3 uint8) so that the five `landmarks` land on the ArcFace template scaled
    to a `size` x `size` crop. Pixels from outside the image are black."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    template = ARCFACE_TEMPLATE_112.astype(np.float64) * (size / ARCFACE_TEMPLATE_SIZE)
    matrix = similarity_transform(_as_points(landmarks, "landmarks"), template)
    warped = cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return np.asarray(warped, dtype=np.uint8)
