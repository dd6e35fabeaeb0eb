"""Decoded frames as the arrays callers use: `upright_bgr` turns a PyAV frame into upright BGR the way
FFmpeg's CLI autorotates, `vr_crop` keeps the view contract §3.4 asks of VR frames. Shared by the
sampler and by face identification's own frame reader; nothing here decodes or reads a file.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from av.video.frame import VideoFrame

from stash_vision.server.arrays import BgrImage


def upright_bgr(frame: VideoFrame) -> BgrImage:
    """A decoded frame as HxWx3 BGR, turned upright like FFmpeg's CLI (which autorotates by
    default): a display rotation of +90° is counter-clockwise, as np.rot90 turns."""
    image = cast(BgrImage, frame.to_ndarray(format="bgr24"))
    quarter_turns = round(frame.rotation / 90) % 4
    if quarter_turns:
        image = np.rot90(image, quarter_turns)
    # PyAV hands back a view over FFmpeg's padded rows when the line size is wider than
    # width*3 (the padding depends on the CPU's SIMD width, so one machine sees it and another
    # does not); copy once here so every consumer gets plain rows.
    return np.ascontiguousarray(image)


def vr_crop(frame: BgrImage) -> BgrImage:
    """Contract §3.4: side-by-side 180° (width/height > 1.5) keeps the right half; otherwise
    over-under 360° keeps the top half's centre 50 % of the width."""
    height, width = frame.shape[:2]
    side_by_side = width / height > 1.5
    crop = frame[:, width // 2 :] if side_by_side else frame[: height // 2, width // 4 : 3 * width // 4]
    # Contiguous, so the caller's resize and tensor code need not care about strides.
    return np.ascontiguousarray(crop)
