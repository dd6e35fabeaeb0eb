"""Unit tests for stash_vision.server.preprocessing: the geometry of each resize mode (input pixel =
source pixel * scale + offset), colour order, scale/mean/std arithmetic and tensor layout, and the
real catalog contracts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from stash_vision.catalog.entries import Catalog, InputContract, ResizeMode
from stash_vision.server.preprocessing import Geometry, fit, preprocess, to_tensor

RED = (0, 0, 255)  # BGR
BLUE = (255, 0, 0)
Image = npt.NDArray[np.uint8]


def contract(
    width: int,
    height: int,
    resize: ResizeMode,
    layout: str = "NCHW",
    color_order: str = "BGR",
    **extra: object,
) -> InputContract:
    return InputContract.model_validate(
        {
            "tensor": "x",
            "layout": layout,
            "color_order": color_order,
            "width": width,
            "height": height,
            "resize": resize,
            **extra,
        }
    )


def to_input(geometry: Geometry, x: float, y: float) -> tuple[float, float]:
    return x * geometry.scale_x + geometry.offset_x, y * geometry.scale_y + geometry.offset_y


def block_image(width: int, height: int, block: tuple[int, int, int, int]) -> Image:
    """A blue image with a red block covering x in [x0, x1), y in [y0, y1) (pixel edges)."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = BLUE
    x0, y0, x1, y1 = block
    image[y0:y1, x0:x1] = RED
    return image


def assert_block_lands_where_geometry_says(
    fitted: Image, geometry: Geometry, block: tuple[int, int, int, int], margin: int = 2
) -> None:
    """Pixels well inside the mapped block are red; pixels well outside it (in the content) are blue."""
    x0, y0 = to_input(geometry, block[0], block[1])
    x1, y1 = to_input(geometry, block[2], block[3])
    ix0, iy0, ix1, iy1 = round(x0), round(y0), round(x1), round(y1)
    inside = fitted[iy0 + margin : iy1 - margin, ix0 + margin : ix1 - margin]
    assert inside.size > 0
    assert np.all(np.abs(inside.astype(int) - RED) <= 1), "mapped block interior is not red"
    # The source's corner (0, 0) is blue and maps to input (offset_x, offset_y).
    cx, cy = to_input(geometry, 0, 0)
    corner = fitted[max(0, round(cy)), max(0, round(cx))]
    assert np.all(np.abs(corner.astype(int) - BLUE) <= 1)
    # Just outside the block, left of it and above it, is blue.
    left = fitted[(iy0 + iy1) // 2, ix0 - margin - 1]
    above = fitted[iy0 - margin - 1, (ix0 + ix1) // 2]
    assert np.all(np.abs(left.astype(int) - BLUE) <= 1)
    assert np.all(np.abs(above.astype(int) - BLUE) <= 1)


# ------------------------------------------------------------------------------------------- geometry


def test_stretch_maps_source_corners_to_input_corners_and_points_to_pixels() -> None:
    block = (80, 50, 120, 100)
    image = block_image(200, 100, block)
    fitted, geometry = fit(image, contract(50, 40, ResizeMode.STRETCH))
    assert fitted.shape == (40, 50, 3)
    assert geometry == Geometry(200, 100, 0.25, 0.4, 0.0, 0.0, 50, 40)
    assert to_input(geometry, 0, 0) == (0.0, 0.0)
    assert to_input(geometry, 200, 100) == pytest.approx((50.0, 40.0))
    assert_block_lands_where_geometry_says(fitted, geometry, block)


def test_stretch_at_input_size_is_the_identity() -> None:
    image = block_image(64, 48, (10, 10, 20, 20))
    fitted, geometry = fit(image, contract(64, 48, ResizeMode.STRETCH))
    np.testing.assert_array_equal(fitted, image)
    assert (geometry.scale_x, geometry.scale_y, geometry.offset_x, geometry.offset_y) == (1.0, 1.0, 0.0, 0.0)


def test_letterbox_wide_source_keeps_aspect_and_pads_bottom() -> None:
    block = (200, 0, 400, 100)
    image = block_image(400, 200, block)
    fitted, geometry = fit(image, contract(100, 100, ResizeMode.LETTERBOX))
    assert fitted.shape == (100, 100, 3)
    assert geometry == Geometry(400, 200, 0.25, 0.25, 0.0, 0.0, 100, 100)
    assert to_input(geometry, 0, 0) == (0.0, 0.0)
    assert to_input(geometry, 400, 200) == (100.0, 50.0)
    # Content in rows [0, 50), zero padding below.
    assert np.all(fitted[50:] == 0)
    assert np.all(np.abs(fitted[2:48, 2:48].astype(int) - BLUE) <= 1)
    assert np.all(np.abs(fitted[2:23, 52:98].astype(int) - RED) <= 1)
    assert np.all(np.abs(fitted[27:48, 52:98].astype(int) - BLUE) <= 1)


def test_letterbox_tall_source_pads_right() -> None:
    block = (0, 180, 60, 360)
    image = block_image(120, 360, block)
    fitted, geometry = fit(image, contract(100, 100, ResizeMode.LETTERBOX))
    new_w = round(120 * 100 / 360)  # 33
    assert fitted.shape == (100, 100, 3)
    assert geometry.scale_x == pytest.approx(new_w / 120)
    assert geometry.scale_y == pytest.approx(100 / 360)
    assert (geometry.offset_x, geometry.offset_y) == (0.0, 0.0)
    assert to_input(geometry, 120, 360) == pytest.approx((new_w, 100.0))
    assert np.all(fitted[:, new_w:] == 0)
    assert np.all(np.abs(fitted[55:98, 1:15].astype(int) - RED) <= 1)
    assert np.all(np.abs(fitted[2:45, 1:15].astype(int) - BLUE) <= 1)


def test_letterbox_upscales_small_sources() -> None:
    block = (10, 5, 30, 20)
    image = block_image(50, 25, block)
    fitted, geometry = fit(image, contract(100, 100, ResizeMode.LETTERBOX))
    assert geometry == Geometry(50, 25, 2.0, 2.0, 0.0, 0.0, 100, 100)
    assert np.all(fitted[50:] == 0)
    assert_block_lands_where_geometry_says(fitted, geometry, block)


def test_resize_center_crop_maps_points_through_resize_and_crop_offset() -> None:
    block = (64, 48, 128, 96)
    image = block_image(512, 384, block)
    spec = contract(224, 224, ResizeMode.RESIZE_CENTER_CROP, resize_width=256, resize_height=256)
    fitted, geometry = fit(image, spec)
    assert fitted.shape == (224, 224, 3)
    assert geometry.source_width == 512 and geometry.source_height == 384
    assert geometry.scale_x == pytest.approx(0.5)
    assert geometry.scale_y == pytest.approx(256 / 384)
    assert (geometry.offset_x, geometry.offset_y) == (-16.0, -16.0)
    assert (geometry.input_width, geometry.input_height) == (224, 224)
    # The crop window's corners are source points (32, 24) and (480, 360).
    assert to_input(geometry, 32, 24) == pytest.approx((0.0, 0.0))
    assert to_input(geometry, 480, 360) == pytest.approx((224.0, 224.0))
    assert to_input(geometry, 64, 48) == pytest.approx((16.0, 16.0))
    assert to_input(geometry, 128, 96) == pytest.approx((48.0, 48.0))
    assert_block_lands_where_geometry_says(fitted, geometry, block)


def test_resize_center_crop_without_resize_size_is_a_plain_resize() -> None:
    image = block_image(300, 200, (150, 100, 300, 200))
    fitted, geometry = fit(image, contract(60, 40, ResizeMode.RESIZE_CENTER_CROP))
    assert fitted.shape == (40, 60, 3)
    assert geometry == Geometry(300, 200, 0.2, 0.2, 0.0, 0.0, 60, 40)


# ------------------------------------------------------------------------------------------ pixel values


def constant_image(bgr: tuple[int, int, int], width: int = 16, height: int = 12) -> Image:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = bgr
    return image


def test_rgb_scale_mean_std_values_are_exact_for_a_constant_colour() -> None:
    bgr = (10, 100, 200)
    spec = contract(
        16,
        12,
        ResizeMode.STRETCH,
        color_order="RGB",
        scale=1 / 255,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    tensor = to_tensor(constant_image(bgr), spec)
    assert tensor.dtype == np.float32
    assert tensor.shape == (3, 12, 16)
    rgb = (bgr[2], bgr[1], bgr[0])
    for channel in range(3):
        expected = (rgb[channel] / 255 - spec.mean[channel]) / spec.std[channel]
        plane = tensor[channel]
        assert np.all(plane == plane[0, 0])
        assert float(plane[0, 0]) == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_bgr_order_keeps_opencv_channel_order() -> None:
    bgr = (10, 100, 200)
    spec = contract(16, 12, ResizeMode.STRETCH, color_order="BGR", mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 8.0))
    tensor = to_tensor(constant_image(bgr), spec)
    for channel in range(3):
        assert np.all(tensor[channel] == np.float32((bgr[channel] - spec.mean[channel]) / spec.std[channel]))


def test_nhwc_layout_puts_channels_last() -> None:
    bgr = (1, 2, 3)
    spec = contract(16, 12, ResizeMode.STRETCH, layout="NHWC", color_order="RGB")
    tensor = to_tensor(constant_image(bgr), spec)
    assert tensor.shape == (12, 16, 3)
    assert tensor.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(tensor[5, 7], np.array([3.0, 2.0, 1.0], np.float32))


def test_nchw_layout_puts_channels_first_and_is_contiguous() -> None:
    image = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    tensor = to_tensor(image, contract(16, 12, ResizeMode.STRETCH, layout="NCHW"))
    assert tensor.shape == (3, 12, 16)
    assert tensor.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(tensor, image.transpose(2, 0, 1).astype(np.float32))


def test_letterbox_padding_is_normalised_black() -> None:
    spec = contract(
        32, 32, ResizeMode.LETTERBOX, color_order="RGB", mean=(127.5, 127.5, 127.5), std=(128.0, 128.0, 128.0)
    )
    tensor, _ = preprocess(constant_image((255, 255, 255), 32, 16), spec)
    np.testing.assert_allclose(tensor[:, 16:, :], -127.5 / 128, rtol=1e-6)
    np.testing.assert_allclose(tensor[:, :16, :], 127.5 / 128, rtol=1e-6)


# ------------------------------------------------------------------------------------- real contracts


@pytest.mark.parametrize(
    ("name", "shape"),
    [("open_nsfw", (224, 224, 3)), ("yunet", (3, 640, 640)), ("mobilefacenet", (3, 112, 112))],
)
def test_real_contracts_produce_the_configured_dims(
    name: str, shape: tuple[int, int, int], shared: Path
) -> None:
    entry = Catalog.load().get(name)
    photo = shared / "testdata" / "images" / "fruits.jpg"
    if not photo.is_file():
        pytest.fail(f"shared test image missing: {photo}", pytrace=False)
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    assert image is not None
    tensor, geometry = preprocess(image, entry.input)
    assert tensor.shape == shape
    assert tensor.dtype == np.float32
    assert tensor.flags["C_CONTIGUOUS"]
    config_dims = next(t.dims for t in entry.triton_config.input if t.name == entry.input.tensor)
    assert tuple(config_dims) == shape
    assert (geometry.source_width, geometry.source_height) == (image.shape[1], image.shape[0])
    assert (geometry.input_width, geometry.input_height) == (entry.input.width, entry.input.height)
    assert np.isfinite(tensor).all()


def test_open_nsfw_contract_subtracts_its_bgr_mean() -> None:
    entry = Catalog.load().get("open_nsfw")
    tensor, _ = preprocess(constant_image((104, 117, 123), 300, 300), entry.input)
    np.testing.assert_array_equal(tensor, np.zeros((224, 224, 3), np.float32))


def test_mobilefacenet_contract_on_an_aligned_crop_is_imagenet_normalised_rgb() -> None:
    entry = Catalog.load().get("mobilefacenet")
    tensor, geometry = preprocess(constant_image((0, 128, 255), 112, 112), entry.input)
    assert geometry == Geometry(112, 112, 1.0, 1.0, 0.0, 0.0, 112, 112)
    expected_rgb = [(255 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (0 - 0.406) / 0.225]
    for channel, expected in enumerate(expected_rgb):
        np.testing.assert_allclose(tensor[channel], expected, rtol=1e-5)
