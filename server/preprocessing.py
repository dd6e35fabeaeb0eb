"""Turns a decoded BGR image into a model's input tensor, as its catalog input contract says, and
records the geometry so detections can be mapped back to source pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
from PIL import Image

from stash_vision.catalog.entries import InputContract, ResizeMode
from stash_vision.server.arrays import BgrImage, FloatTensor


@dataclass(frozen=True)
class Geometry:
    """input_x = source_x * scale_x + offset_x (same for y)."""

    source_width: int
    source_height: int
    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    input_width: int
    input_height: int


_CV2_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}


def _resize(image: BgrImage, width: int, height: int, interpolation: str = "auto") -> BgrImage:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    if interpolation == "cubic_antialias":
        # Pillow's bicubic filters over the whole source footprint when shrinking, as torchvision's
        # antialiased Resize does; OpenCV's INTER_CUBIC samples 4x4 pixels and aliases.
        resized = Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC)
        return np.asarray(resized)
    if interpolation == "auto":
        # INTER_AREA avoids aliasing when shrinking a lot (big photos to 224/320/640).
        shrinking = width < image.shape[1] and height < image.shape[0]
        flag = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    else:
        flag = _CV2_INTERPOLATION[interpolation]
    return cast(BgrImage, cv2.resize(image, (width, height), interpolation=flag))


def fit(image: BgrImage, contract: InputContract) -> tuple[BgrImage, Geometry]:
    """Geometric step only: the uint8 image at the model's input size."""
    height, width = image.shape[:2]
    target_w, target_h = contract.width, contract.height
    if contract.resize is ResizeMode.STRETCH:
        fitted = _resize(image, target_w, target_h, contract.interpolation)
        geometry = Geometry(width, height, target_w / width, target_h / height, 0.0, 0.0, target_w, target_h)
    elif contract.resize is ResizeMode.LETTERBOX:
        scale = min(target_w / width, target_h / height)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        fitted = np.zeros((target_h, target_w, 3), np.uint8)
        fitted[:new_h, :new_w] = _resize(image, new_w, new_h, contract.interpolation)
        geometry = Geometry(width, height, new_w / width, new_h / height, 0.0, 0.0, target_w, target_h)
    else:  # RESIZE_CENTER_CROP
        resize_w = contract.resize_width or target_w
        resize_h = contract.resize_height or target_h
        resized = cast(BgrImage, cv2.resize(image, (resize_w, resize_h), interpolation=cv2.INTER_LINEAR))
        x0, y0 = (resize_w - target_w) // 2, (resize_h - target_h) // 2
        fitted = resized[y0 : y0 + target_h, x0 : x0 + target_w]
        geometry = Geometry(
            width, height, resize_w / width, resize_h / height, float(-x0), float(-y0), target_w, target_h
        )
    return fitted, geometry


def to_tensor(fitted: BgrImage, contract: InputContract) -> FloatTensor:
    """Colour order, scaling, mean/std and layout: float32, without a batch dimension."""
    pixels = cv2.cvtColor(fitted, cv2.COLOR_BGR2RGB) if contract.color_order == "RGB" else fitted
    # (x * scale - mean) / std folded into one multiply-add per channel.
    std = np.asarray(contract.std, np.float32)
    gain = np.float32(contract.scale) / std
    bias = np.asarray(contract.mean, np.float32) / std
    tensor = pixels.astype(np.float32) * gain - bias
    if contract.layout == "NCHW":
        tensor = tensor.transpose(2, 0, 1)
    return np.ascontiguousarray(tensor)


def preprocess(image: BgrImage, contract: InputContract) -> tuple[FloatTensor, Geometry]:
    fitted, geometry = fit(image, contract)
    return to_tensor(fitted, contract), geometry
