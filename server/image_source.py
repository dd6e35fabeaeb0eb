"""What callers send as an image, and turning it into pixels (blocking; run it on the CpuPool)."""

from __future__ import annotations

from dataclasses import dataclass

from stash_vision.server.arrays import BgrImage
from stash_vision.server.media.images import ImageLimits, decode_image, read_archive_member, read_image_file
from stash_vision.server.media.paths import MediaPaths


@dataclass(frozen=True)
class ImageBytes:
    data: bytes


@dataclass(frozen=True)
class ImagePath:
    path: str


ImageRef = ImageBytes | ImagePath


class ImageLoader:
    def __init__(self, paths: MediaPaths, limits: ImageLimits) -> None:
        self.paths = paths
        self.limits = limits

    def load(self, ref: ImageRef) -> BgrImage:
        if isinstance(ref, ImagePath):
            location = self.paths.locate(ref.path)
            if location.member is not None:
                data = read_archive_member(location.path, location.member, self.limits)
            else:
                data = read_image_file(location.path, self.limits)
        else:
            data = ref.data
        return decode_image(data, self.limits)
