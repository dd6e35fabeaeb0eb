"""Unit tests for stash_vision.server.media.images: decoding with explicit limits (header read before
any pixel), EXIF orientation, alpha/grey handling, animated GIFs, and reading files from disk.

Real JPEGs come from the shared testdata folder; a missing folder fails the test."""

from __future__ import annotations

import io
import os
import resource
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageFile

from stash_vision.server.errors import InvalidInput, TooLarge
from stash_vision.server.media import images
from stash_vision.server.media.images import ImageLimits, decode_image, read_image_file

LIMITS = ImageLimits(max_pixels=100_000_000, max_file_bytes=256 * 1024 * 1024)


# --------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def real_jpeg(shared: Path) -> bytes:
    path = shared / "testdata" / "images" / "fruits.jpg"
    if not path.is_file():
        pytest.fail(f"shared test image missing: {path} (set STASH_VISION_SHARED_DIR)", pytrace=False)
    return path.read_bytes()


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def pattern_rgb(width: int = 24, height: int = 16) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(42)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR is rewritten to claim width x height (CRC fixed, so it parses)."""
    data = bytearray(encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"))
    # Signature (8) + length (4) + b"IHDR" (4), then 13 bytes of IHDR data and its CRC.
    assert data[12:16] == b"IHDR"
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


# --------------------------------------------------------------------------------------- invalid input


def test_empty_bytes_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        decode_image(b"", LIMITS)


def test_garbage_bytes_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="not an image"):
        decode_image(b"this is definitely not an image" * 10, LIMITS)


def test_truncated_real_jpeg_is_invalid_input(real_jpeg: bytes) -> None:
    assert decode_image(real_jpeg, LIMITS).ndim == 3  # the whole file decodes
    with pytest.raises(InvalidInput, match="truncated"):
        decode_image(real_jpeg[: len(real_jpeg) // 2], LIMITS)


def test_jpeg_with_trailing_data_after_its_end_marker_decodes(real_jpeg: bytes) -> None:
    # Phones append data after a complete JPEG's end marker (motion photos append an MP4, Samsung a
    # SEFT trailer): the image is whole and must decode, not be refused as truncated.
    trailer = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4
    expected = decode_image(real_jpeg, LIMITS)
    np.testing.assert_array_equal(decode_image(real_jpeg + trailer, LIMITS), expected)


def test_truncated_animated_gif_is_invalid_input_at_every_length() -> None:
    frames = [Image.new("RGB", (20, 10), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    leaked: dict[int, str] = {}
    for keep in range(1, len(data)):
        try:
            image = decode_image(data[:keep], LIMITS)
        except InvalidInput:
            continue
        except Exception as error:  # anything else reaches gRPC callers as INTERNAL
            leaked[keep] = f"{type(error).__name__}: {error}"
        else:
            assert image.shape == (10, 20, 3)
    assert not leaked, f"{len(leaked)} truncations raised something other than InvalidInput, e.g. " + str(
        dict(list(leaked.items())[:3])
    )


def test_real_jpeg_decodes_to_bgr_of_header_size(real_jpeg: bytes) -> None:
    width, height = Image.open(io.BytesIO(real_jpeg)).size
    image = decode_image(real_jpeg, LIMITS)
    assert image.shape == (height, width, 3)
    assert image.dtype == np.uint8


def test_png_claiming_30000x30000_is_too_large_without_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    data = png_claiming_size(30000, 30000)
    assert Image.open(io.BytesIO(data)).size == (30000, 30000)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixels were decoded; the header alone must refuse this image")

    monkeypatch.setattr(images.cv2, "imdecode", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TooLarge) as raised:
        decode_image(data, LIMITS)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kib) / 1024
    assert "30000x30000" in str(raised.value)
    assert "STASH_VISION_MAX_IMAGE_PIXELS" in str(raised.value)
    # Decoding would need 2.7 GB; refusing from the header allocates next to nothing.
    assert grown_mib < 200, f"peak memory grew by {grown_mib:.0f} MiB"


def test_pixel_limit_is_inclusive_of_the_limit() -> None:
    data = encode(Image.new("RGB", (10, 10)), "PNG")
    assert decode_image(data, ImageLimits(max_pixels=100, max_file_bytes=1 << 20)).shape == (10, 10, 3)
    with pytest.raises(TooLarge):
        decode_image(data, ImageLimits(max_pixels=99, max_file_bytes=1 << 20))


def test_bytes_above_file_limit_are_too_large() -> None:
    data = encode(Image.new("RGB", (10, 10)), "PNG")
    with pytest.raises(TooLarge, match="STASH_VISION_MAX_IMAGE_FILE_BYTES"):
        decode_image(data, ImageLimits(max_pixels=1000, max_file_bytes=len(data) - 1))


# ------------------------------------------------------------------------------------- colour handling


def test_grayscale_png_becomes_three_equal_channels() -> None:
    grey = np.arange(24 * 16, dtype=np.uint8).reshape(16, 24)
    image = decode_image(encode(Image.fromarray(grey, "L"), "PNG"), LIMITS)
    assert image.shape == (16, 24, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], grey)


def test_rgba_png_drops_alpha_and_keeps_colour() -> None:
    rgba = np.zeros((16, 24, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 255
    rgba[:8, ..., 3] = 128
    image = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), LIMITS)
    assert image.shape == (16, 24, 3)
    assert np.all(image[12, 12] == (50, 100, 200))


def test_jpeg_with_exif_orientation_6_is_rotated_upright() -> None:
    # 40 wide x 20 high, left half red, right half blue; orientation 6 = rotate 90 degrees clockwise.
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95)
    image = decode_image(data, LIMITS)
    assert image.shape == (40, 20, 3), "width and height must be swapped"
    # After the clockwise turn the red (left) half is on top; BGR order.
    assert np.all(np.abs(image[5, 10].astype(int) - (0, 0, 255)) <= 8)
    assert np.all(np.abs(image[35, 10].astype(int) - (255, 0, 0)) <= 8)


def test_animated_gif_decodes_the_middle_frame() -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]  # RGB
    frames = [Image.new("RGB", (20, 10), colour) for colour in colours]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    image = decode_image(data, LIMITS)
    assert image.shape == (10, 20, 3)
    assert np.all(image == (0, 255, 0))


def test_webp_lossless_round_trip_is_exact() -> None:
    rgb = pattern_rgb()
    image = decode_image(encode(Image.fromarray(rgb), "WEBP", lossless=True), LIMITS)
    np.testing.assert_array_equal(image, rgb[:, :, ::-1])


def test_bmp_round_trip_is_exact() -> None:
    rgb = pattern_rgb()
    image = decode_image(encode(Image.fromarray(rgb), "BMP"), LIMITS)
    np.testing.assert_array_equal(image, rgb[:, :, ::-1])


def test_png_round_trip_is_exact() -> None:
    rgb = pattern_rgb(31, 7)
    image = decode_image(encode(Image.fromarray(rgb), "PNG"), LIMITS)
    np.testing.assert_array_equal(image, rgb[:, :, ::-1])


# ------------------------------------------------------------------------------------------ read files


def test_read_image_file_returns_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"0123456789")
    assert read_image_file(path, LIMITS) == b"0123456789"


def test_read_image_file_above_byte_limit_is_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\0" * 3 * 1024 * 1024)
    with pytest.raises(TooLarge) as raised:
        read_image_file(path, ImageLimits(max_pixels=1000, max_file_bytes=1024 * 1024))
    assert str(path) in str(raised.value)
    assert "STASH_VISION_MAX_IMAGE_FILE_BYTES" in str(raised.value)


def test_read_image_file_missing_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read"):
        read_image_file(tmp_path / "missing.jpg", LIMITS)


@pytest.fixture
def unreadable_file() -> Iterator[Path]:
    """A mode-000 file in a world-traversable folder (so an unprivileged child can reach it)."""
    folder = Path(tempfile.mkdtemp(prefix="stash-vision-unreadable-"))
    folder.chmod(0o755)
    path = folder / "secret.jpg"
    path.write_bytes(b"\xff\xd8 not really a jpeg \xff\xd9")
    path.chmod(0o000)
    try:
        yield path
    finally:
        path.chmod(0o600)
        path.unlink()
        folder.rmdir()


def test_read_image_file_unreadable_is_invalid_input(unreadable_file: Path) -> None:
    if os.geteuid() != 0:
        with pytest.raises(InvalidInput, match="permission denied"):
            read_image_file(unreadable_file, LIMITS)
        return
    # As root, mode 000 does not stop reads (CAP_DAC_OVERRIDE), so checking in-process would prove
    # nothing: make the same call in a forked child that has dropped to an unprivileged user.
    assert read_image_file(unreadable_file, LIMITS)  # root really can read it
    outcome = call_as_nobody(unreadable_file)
    assert outcome.startswith("InvalidInput:"), outcome
    assert "permission denied" in outcome
    assert str(unreadable_file) in outcome


def call_as_nobody(path: Path) -> str:
    """read_image_file(path) in a forked child running as uid/gid 65534; returns what it raised."""
    nobody = 65534
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        status = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody)
            os.setuid(nobody)
            try:
                read_image_file(path, ImageLimits(1000, 1 << 20))
                message = "READ OK"
            except InvalidInput as error:
                message = f"InvalidInput: {error}"
            except BaseException as error:
                message = f"{type(error).__name__}: {error}"
            os.write(write_end, message.encode())
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        outcome = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "child could not drop privileges"
    return outcome
