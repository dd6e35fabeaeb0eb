"""The preprocessing as it was before the part-4 speed work (issue 16), kept verbatim as the
reference the fast path is checked against (tests/unit/test_preprocessing_fast.py) and timed
against (bench/bench_preprocess.py): the exact Pillow bicubic resize and the per-pixel float
arithmetic."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from stash_vision.catalog.entries import InputContract
from stash_vision.server.arrays import BgrImage, FloatTensor


def exact_cubic_antialias(image: BgrImage, width: int, height: int) -> BgrImage:
    """Pillow's bicubic over the whole source footprint, without the integer pre-reduction."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


def reference_to_tensor(fitted: BgrImage, contract: InputContract) -> FloatTensor:
    pixels = cv2.cvtColor(fitted, cv2.COLOR_BGR2RGB) if contract.color_order == "RGB" else fitted
    std = np.asarray(contract.std, np.float32)
    gain = np.float32(contract.scale) / std
    bias = np.asarray(contract.mean, np.float32) / std
    tensor = pixels.astype(np.float32) * gain - bias
    if contract.layout == "NCHW":
        tensor = tensor.transpose(2, 0, 1)
    return np.ascontiguousarray(tensor)
