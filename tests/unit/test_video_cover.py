"""The scene cover (Stash's screenshot) at the video's width: Stash Sense upscales a screenshot
narrower than 80 % of the video so its faces pass the same size gate as the frames' faces."""

from __future__ import annotations

import numpy as np

from stash_vision.server.faces.video_source import cover_at_video_width


def test_a_narrow_cover_is_upscaled_to_the_video_width_keeping_its_aspect() -> None:
    cover = np.zeros((180, 320, 3), np.uint8)
    scaled = cover_at_video_width(cover, 1280)
    assert scaled.shape == (720, 1280, 3) and scaled.dtype == np.uint8


def test_a_cover_near_the_video_width_or_an_unknown_width_is_left_alone() -> None:
    cover = np.zeros((540, 1024, 3), np.uint8)
    assert cover_at_video_width(cover, 1280) is cover  # 80 % of 1280
    assert cover_at_video_width(cover, 0) is cover
