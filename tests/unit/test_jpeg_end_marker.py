"""The cheap truncation check of stash_vision.server.media.images: a JPEG whose end marker follows
its scan data decodes once, trailer or not; one cut short is still refused, even when a header
segment (an EXIF thumbnail) carries an end marker of its own."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from stash_vision.server.errors import InvalidInput
from stash_vision.server.media import images
from stash_vision.server.media.images import ImageLimits, decode_image
from tests.conftest import shared_file

LIMITS = ImageLimits(max_pixels=100_000_000, max_file_bytes=256 * 1024 * 1024)
TRAILER = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4


@pytest.fixture
def real_jpeg() -> bytes:
    return shared_file("testdata/images/building.jpg").read_bytes()


@pytest.fixture
def full_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the full Pillow decodes run to rule out truncation."""
    calls: list[int] = []
    check = images._refuse_if_truncated

    def counted(header: Image.Image) -> None:
        calls.append(1)
        check(header)

    monkeypatch.setattr(images, "_refuse_if_truncated", counted)
    return calls


def with_thumbnail(jpeg: bytes) -> bytes:
    """`jpeg` with an APP1 EXIF-like segment after its start marker holding a whole small JPEG
    (its own start, scan and end markers), as cameras embed a thumbnail."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "JPEG")
    payload = b"Exif\x00\x00" + buffer.getvalue()
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]


def test_a_jpeg_with_a_trailer_decodes_once_and_as_without_it(
    real_jpeg: bytes, full_decodes: list[int]
) -> None:
    expected = decode_image(real_jpeg, LIMITS)
    np.testing.assert_array_equal(decode_image(real_jpeg + TRAILER, LIMITS), expected)
    np.testing.assert_array_equal(decode_image(with_thumbnail(real_jpeg) + TRAILER, LIMITS), expected)
    assert full_decodes == []


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1])
def test_a_cut_jpeg_is_refused_though_its_thumbnail_has_an_end_marker(
    real_jpeg: bytes, full_decodes: list[int], keep: float
) -> None:
    whole = with_thumbnail(real_jpeg)
    with pytest.raises(InvalidInput, match="truncated"):
        decode_image(whole[: int(len(whole) * keep)], LIMITS)
    assert full_decodes == [1]


def test_a_cut_progressive_jpeg_is_refused(real_jpeg: bytes) -> None:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(real_jpeg)).save(buffer, "JPEG", progressive=True, quality=90)
    progressive = buffer.getvalue()
    assert decode_image(progressive + TRAILER, LIMITS).shape[:2] == (600, 868)
    with pytest.raises(InvalidInput, match="truncated"):
        decode_image(progressive[: len(progressive) * 2 // 3], LIMITS)
