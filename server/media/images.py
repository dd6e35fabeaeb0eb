"""Decodes images into BGR uint8 arrays with explicit limits. The size is read from the header
before any pixel is decoded, so a 30000x30000 image is refused without allocating 2.7 GB."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from stash_vision.server.arrays import BgrImage
from stash_vision.server.errors import InvalidInput, MediaNotFound, TooLarge

# Our own pixel limit replaces Pillow's decompression-bomb guard (which would raise mid-way).
Image.MAX_IMAGE_PIXELS = None

_JPEG_END = b"\xff\xd9"


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    max_file_bytes: int


def read_image_file(path: Path, limits: ImageLimits) -> bytes:
    try:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise TooLarge(
                f"{path} is {size / 2**20:.0f} MiB, above the {limits.max_file_bytes / 2**20:.0f} MiB limit "
                "(STASH_VISION_MAX_IMAGE_FILE_BYTES)"
            )
        return path.read_bytes()
    except PermissionError:
        raise InvalidInput(f"{path} is not readable by the server (permission denied)") from None
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror or error}") from None


def read_archive_member(archive: Path, member: str, limits: ImageLimits) -> bytes:
    try:
        with zipfile.ZipFile(archive) as bundle:
            try:
                info = bundle.getinfo(member)
            except KeyError:
                raise MediaNotFound(f"{archive} has no member {member!r}") from None
            if info.file_size > limits.max_file_bytes:
                raise TooLarge(
                    f"{archive}/{member} is {info.file_size / 2**20:.0f} MiB uncompressed, above the limit "
                    "(STASH_VISION_MAX_IMAGE_FILE_BYTES)"
                )
            return bundle.read(info)
    except zipfile.BadZipFile as error:
        raise InvalidInput(f"{archive} is not a readable zip archive ({error})") from None
    except OSError as error:
        raise InvalidInput(f"cannot read {archive}: {error.strerror or error}") from None


def decode_image(data: bytes, limits: ImageLimits) -> BgrImage:
    """Returns HxWx3 BGR uint8, EXIF orientation applied, alpha dropped, grey expanded to 3 channels."""
    if not data:
        raise InvalidInput("empty image (0 bytes)")
    if len(data) > limits.max_file_bytes:
        raise TooLarge(
            f"image is {len(data) / 2**20:.0f} MiB, above the limit (STASH_VISION_MAX_IMAGE_FILE_BYTES)"
        )
    try:
        header = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidInput(
            "not an image, or a format that cannot be read (JPEG, PNG, WebP, BMP, GIF, TIFF)"
        ) from None
    except OSError as error:
        raise InvalidInput(f"cannot read image header: {error}") from None
    width, height = header.size
    if width <= 0 or height <= 0:
        raise InvalidInput(f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise TooLarge(
            f"image is {width}x{height} ({width * height / 1e6:.0f} MP), above the "
            f"{limits.max_pixels / 1e6:.0f} MP limit (STASH_VISION_MAX_IMAGE_PIXELS)"
        )
    if header.format == "JPEG" and not _ends_its_scan(data):
        _refuse_if_truncated(header)

    image: BgrImage | None = None
    if header.format != "GIF":
        image = cast(BgrImage | None, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    if image is None:
        image = _decode_with_pillow(header)
    return image


def _ends_its_scan(data: bytes) -> bool:
    """Whether the JPEG's own end marker is there: at the very end, or before a trailer (motion
    photos append a video, Samsung a SEFT block). It is looked for only after the header segments
    (walked by their lengths up to the first start-of-scan), since an EXIF thumbnail among them has
    an end marker of its own, while compressed scan data never holds one (0xFF is stuffed there).
    Finding it spares a trailer-carrying photo a second, full decode just to rule out truncation."""
    if data.rstrip(b"\x00").endswith(_JPEG_END):
        return True
    position = 2  # after the start-of-image marker
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before a marker
            position += 1
        elif marker == 0xDA:
            return data.find(_JPEG_END, position) != -1
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return False  # malformed headers: the full decode decides


def _refuse_if_truncated(header: Image.Image) -> None:
    """A JPEG without its end marker is cut short, or its headers are malformed; only a full decode
    tells. It is rare, so the cost is paid only then."""
    try:
        header.load()
    except OSError:
        raise InvalidInput("truncated JPEG (the file ends before the image does)") from None


def _decode_with_pillow(image: Image.Image) -> BgrImage:
    try:
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            image.seek(frames // 2)  # animated: the middle frame, as the original server does
        rgb = image.convert("RGB")
    except Exception as error:  # Pillow raises many types on corrupt data (IndexError, struct.error, ...)
        raise InvalidInput(f"corrupt or unsupported image data: {error or type(error).__name__}") from None
    return cast(BgrImage, cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR))
