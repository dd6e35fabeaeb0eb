"""Unit tests for stash_vision.server.media.video: the sampling arithmetic of contract §3.4 worked out
by hand, the strategy rule, VR crop geometry, and decoding of tiny videos generated here with PyAV
whose frames carry their own index as brightness, so each sample can say which frame it came from.
Malformed input (missing, empty, not a video, a still image, audio only, truncated) must fail with a
clear domain error, or come back as a documented partial result."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
import pytest
from av.video.stream import VideoStream
from PIL import Image

from stash_vision.server.arrays import BgrImage
from stash_vision.server.errors import InvalidInput, MediaNotFound
from stash_vision.server.media import video
from stash_vision.server.media.video import Strategy, VideoInfo, probing, sample_plan, vr_crop

FPS = 25
FRAMES = 100  # 4 s
WIDTH, HEIGHT = 64, 48


# --------------------------------------------------------------------------------------------- helpers


def info_for(
    fps: float,
    frames: int,
    *,
    keyframe_interval_s: float | None = 8.0,
    has_b_frames: bool = True,
    timestamps_reliable: bool = True,
    indexed: bool = True,
    bidir_skippable: bool = False,
) -> VideoInfo:
    return VideoInfo(
        duration_s=frames / fps,
        fps=fps,
        frame_count_estimate=frames,
        width=1920,
        height=1080,
        codec="h264",
        keyframe_interval_s=keyframe_interval_s,
        has_b_frames=has_b_frames,
        container_format="mov,mp4,m4a,3gp,3g2,mj2",
        header_frames=frames,
        timestamps_reliable=timestamps_reliable,
        indexed=indexed,
        bidir_skippable=bidir_skippable,
    )


def index_image(index: int, width: int, height: int) -> BgrImage:
    """Frame `index` as two flat halves: units digit on the left, tens on the right, 20 grey levels
    apart (inside video range, far beyond compression error)."""
    image = np.empty((height, width, 3), np.uint8)
    image[:, : width // 2] = 20 + 20 * (index % 10)
    image[:, width // 2 :] = 20 + 20 * (index // 10)
    return image


def index_of(frame: BgrImage) -> int:
    """Reads back the index written by index_image, away from the edge between the halves."""
    width = frame.shape[1]
    units = round((float(frame[:, 2 : width // 2 - 4].mean()) - 20) / 20)
    tens = round((float(frame[:, width // 2 + 4 : -2].mean()) - 20) / 20)
    return 10 * tens + units


def write_video(
    path: Path,
    *,
    codec: str = "libx264",
    gop: int = 10,
    frames: int = FRAMES,
    size: tuple[int, int] = (WIDTH, HEIGHT),
    rotation: int | None = None,
    muxer_options: dict[str, str] | None = None,
    b_frames: int = 3,
    x264_params: str = "",
) -> Path:
    """Frame i shows its index (index_image). libx264 (veryfast: one reference frame): 3 B-frames
    in every mini-GOP, the middle one a reference, so NONREF skipping drops every other frame and
    BIDIR skipping three frames in four."""
    width, height = size
    with av.open(str(path), "w", options=muxer_options) as out:
        settings = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        if codec == "libx264":
            params = "b-adapt=0" + (f":{x264_params}" if x264_params else "")
            settings |= {"bf": str(b_frames), "x264-params": params, "preset": "veryfast"}
        stream = out.add_stream(codec, rate=FPS, options=settings)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(index_image(i, width, height), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("video")


@pytest.fixture(scope="module")
def dense_keyframes(media: Path) -> Path:
    """H.264 with B-frames, a keyframe every 10 frames (0.4 s)."""
    return write_video(media / "dense.mp4", gop=10)


@pytest.fixture(scope="module", params=["mp4", "mkv"])
def dense_any_container(media: Path, request: pytest.FixtureRequest) -> Path:
    """The same in MP4 (index of decode times) and Matroska (cues of presentation times, loaded on
    the first seek)."""
    return write_video(media / f"dense_any.{request.param}", gop=10)


@pytest.fixture(scope="module")
def one_keyframe(media: Path) -> Path:
    """H.264 with B-frames and a single keyframe: nothing to seek to."""
    return write_video(media / "one_gop.mp4", gop=250)


def write_moving_video(path: Path, *, references: int, frames: int = FRAMES) -> Path:
    """A noise texture scrolling 3 px right and 2 px down per frame: every frame differs from the
    ones before, so a frame predicted from a missing reference comes out visibly wrong. libx264
    with 3 B-frames, B-pyramid normal (x264's default) and `references` reference frames."""
    width, height = 160, 96
    texture = np.random.default_rng(7).integers(0, 256, (height * 2, width * 2, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(texture).resize((width * 2, height * 2), Image.Resampling.BOX))
    with av.open(str(path), "w") as out:
        settings = {
            "g": "250",
            "bf": "3",
            "preset": "veryfast",
            "x264-params": f"b-adapt=0:b-pyramid=normal:ref={references}:scenecut=0",
        }
        stream = out.add_stream("libx264", rate=FPS, options=settings)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            x, y = (3 * i) % width, (2 * i) % height
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(texture[y : y + height, x : x + width]), format="rgb24"
            )
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decode_all(path: Path, skip_frame: str = "DEFAULT") -> dict[int, BgrImage]:
    """Every frame the decoder gives, by index (pts in frames), with PyAV directly."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = skip_frame  # type: ignore[assignment]
        return {
            round(float(frame.time) * FPS): cast(BgrImage, frame.to_ndarray(format="bgr24"))
            for frame in container.decode(stream)
            if frame.time is not None
        }


def collect(iterator: video.SampleIterator) -> list[video.Sample]:
    with iterator:
        return list(iterator)


# ---------------------------------------------------------------------------------- plan arithmetic


@pytest.mark.parametrize(
    ("fps", "interval", "step"),
    [
        (30000 / 1001, 2.0, 60),  # 59.94 → 60
        (10.0, 2.0, 20),
        (24000 / 1001, 0.5, 12),  # 11.99 → 12
        (25.0, 2.0, 50),
        (26.777, 2.0, 54),  # 53.55 → 54
        (30.0, 0.01, 1),  # max(1, round(0.3))
    ],
)
def test_step_is_fps_times_interval_rounded(fps: float, interval: float, step: int) -> None:
    assert sample_plan(info_for(fps, 1000), interval).step == step


def test_vtest_arithmetic_79_5_s_at_10_fps_every_2_s_gives_40_samples() -> None:
    plan = sample_plan(info_for(10.0, 795), 2.0)
    assert plan.step == 20
    assert plan.expected_samples == 40  # frames 0, 20, …, 780 of 0..794
    assert list(plan.frame_indices) == list(range(0, 781, 20))
    assert [plan.time_of(k) for k in (0, 1, 39)] == [0.0, 2.0, 78.0]


def test_a_frame_count_that_is_a_multiple_of_the_step_does_not_add_a_sample_past_the_end() -> None:
    plan = sample_plan(info_for(25.0, 100), 2.0)  # step 50: frames 0 and 50; frame 100 does not exist
    assert list(plan.frame_indices) == [0, 50]


@pytest.mark.parametrize("interval", [4.0, 10.0, 3600.0])
def test_an_interval_as_long_as_or_longer_than_the_video_gives_exactly_one_sample_at_0(
    interval: float,
) -> None:
    plan = sample_plan(info_for(25.0, 100), interval)  # 4 s
    assert plan.expected_samples == 1
    assert list(plan.frame_indices) == [0]
    assert plan.time_of(0) == 0.0


@pytest.mark.parametrize("interval", [0.0, -1.0, -0.001, math.nan, math.inf, -math.inf])
def test_invalid_intervals_are_refused(interval: float) -> None:
    with pytest.raises(InvalidInput, match="frame_interval"):
        sample_plan(info_for(25.0, 100), interval)


# ------------------------------------------------------------------------------------- strategy rule


def test_files_whose_timestamps_cannot_identify_frames_are_counted() -> None:
    plan = sample_plan(info_for(30.0, 1800, keyframe_interval_s=0.5, timestamps_reliable=False), 2.0)
    assert plan.strategy is Strategy.SEQUENTIAL
    assert plan.tolerance_frames == 0


def test_a_small_step_decodes_sequentially() -> None:
    assert sample_plan(info_for(30.0, 1800, keyframe_interval_s=0.1), 0.1).strategy is Strategy.SEQUENTIAL


def test_long_gops_with_b_frames_skip_non_reference_frames() -> None:
    plan = sample_plan(info_for(30.0, 1800, keyframe_interval_s=8.3), 2.0)
    assert plan.strategy is Strategy.SKIP_NONREF
    assert plan.tolerance_frames == video.TOLERANCE_FRAMES


def test_keyframes_denser_than_the_step_are_sought() -> None:
    assert sample_plan(info_for(30.0, 1800, keyframe_interval_s=1.0), 2.0).strategy is Strategy.SEEK
    # A long interval makes seeking worth it even with 8 s GOPs.
    assert sample_plan(info_for(30.0, 1800, keyframe_interval_s=8.0), 10.0).strategy is Strategy.SEEK


def test_without_b_frames_seeking_pays_up_to_two_steps_per_gop() -> None:
    no_b = {"has_b_frames": False}
    assert sample_plan(info_for(30.0, 1800, keyframe_interval_s=3.5, **no_b), 2.0).strategy is Strategy.SEEK
    assert (
        sample_plan(info_for(30.0, 1800, keyframe_interval_s=8.0, **no_b), 2.0).strategy
        is Strategy.SEQUENTIAL
    )


def test_seeking_needs_an_index_and_a_known_keyframe_spacing() -> None:
    assert sample_plan(info_for(30.0, 1800, keyframe_interval_s=1.0, indexed=False), 2.0).strategy is (
        Strategy.SKIP_NONREF
    )
    assert sample_plan(info_for(30.0, 1800, keyframe_interval_s=None), 2.0).strategy is Strategy.SKIP_NONREF


def test_b_frames_no_p_frame_refers_to_are_all_skipped() -> None:
    plan = sample_plan(info_for(30.0, 1800, keyframe_interval_s=8.3, bidir_skippable=True), 2.0)
    assert plan.strategy is Strategy.SKIP_BIDIR
    assert plan.tolerance_frames == video.TOLERANCE_FRAMES
    # Without B-frames there is nothing to skip, whatever the encoder's settings say.
    no_b = info_for(30.0, 1800, keyframe_interval_s=8.3, has_b_frames=False, bidir_skippable=True)
    assert sample_plan(no_b, 2.0).strategy is Strategy.SEQUENTIAL


def test_decoding_only_i_and_p_frames_leaves_seeking_to_sparser_samples() -> None:
    # Keyframes every 30 frames: with step 36 (1.2 GOP) seeking beats skipping non-reference frames
    # but not decoding only the I- and P-frames; from step 43 (1.43 GOP) it beats both.
    assert sample_plan(info_for(30.0, 1800, keyframe_interval_s=1.0), 1.2).strategy is Strategy.SEEK
    skippable = info_for(30.0, 1800, keyframe_interval_s=1.0, bidir_skippable=True)
    assert sample_plan(skippable, 1.2).strategy is Strategy.SKIP_BIDIR
    assert sample_plan(skippable, 1.5).strategy is Strategy.SEEK


def test_skipping_b_frames_is_refused_where_p_frames_may_refer_to_them() -> None:
    plan = sample_plan(info_for(30.0, 1800), 2.0, strategy=Strategy.SKIP_BIDIR)
    assert plan.strategy is Strategy.SKIP_NONREF
    assert "refer to B-frames" in plan.reason
    skippable = info_for(30.0, 1800, bidir_skippable=True)
    assert sample_plan(skippable, 2.0, strategy=Strategy.SKIP_BIDIR).strategy is Strategy.SKIP_BIDIR


X264_SEI = (
    b"\x00\x00\x00\x02\x09\xf0\x00\x00\x02\xb0\x06\x05\xff\xff\xaa\xdcE\xe9\xbd\xe6\xd9H\xb7\x96,"
    b"\xd8 \xd9#\xee\xefx264 - core 165 - H.264/MPEG-4 AVC codec - Copyleft 2003-2025 - "
    b"http://www.videolan.org/x264.html - options: cabac=1 ref=%s deblock=1:0:0 analyse=0x3:0x113 "
    b"bframes=3 b_pyramid=%s b_adapt=1 keyint=250\x00\x80\x00\x00\x12\x34e\x88\x84"
)


@pytest.mark.parametrize(
    ("ref", "pyramid", "skippable"),
    [
        (b"3", b"2", False),  # x264's default (preset medium): P-frames use B-references
        (b"1", b"2", True),  # one reference: the I/P frame just before
        (b"5", b"1", True),  # strict pyramid: only B-frames refer to B-frames
        (b"3", b"0", True),  # no pyramid: no B-frame is a reference
    ],
)
def test_which_b_frames_can_be_skipped_is_read_from_x264s_settings(
    ref: bytes, pyramid: bytes, skippable: bool
) -> None:
    head = X264_SEI % (ref, pyramid)
    settings = probing._x264_settings(head)
    assert settings is not None
    assert (settings["ref"], settings["b_pyramid"], settings["keyint"]) == (
        ref.decode(),
        pyramid.decode(),
        "250",
    )
    assert probing._bidir_skippable("h264", head) is skippable
    assert not probing._bidir_skippable("hevc", head), "only H.264's rules are known"


def test_without_x264s_settings_b_frames_are_not_all_skipped() -> None:
    assert probing._x264_settings(b"\x00\x00\x01\x65\x88" * 100) is None
    assert not probing._bidir_skippable("h264", b"\x00\x00\x01\x65\x88" * 100)
    assert not probing._bidir_skippable("h264", b"")


def test_a_requested_strategy_overrides_the_rule() -> None:
    plan = sample_plan(info_for(30.0, 1800, timestamps_reliable=False), 2.0, strategy=Strategy.SEEK)
    assert plan.strategy is Strategy.SEEK
    assert plan.reason == "requested"


# ------------------------------------------------------------------------------------------- VR crop


def coordinates(height: int, width: int) -> BgrImage:
    """Channel 0 = row, channel 1 = column (mod 256), so a crop shows where it was taken from."""
    rows, cols = np.mgrid[0:height, 0:width]
    image: BgrImage = np.stack([rows % 256, cols % 256, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    return image


def test_side_by_side_keeps_the_right_half() -> None:
    frame = coordinates(100, 200)  # 2:1 > 1.5
    crop = vr_crop(frame)
    assert crop.shape == (100, 100, 3)
    assert np.array_equal(crop, frame[:, 100:])
    assert crop[0, 0, 1] == 100


def test_over_under_keeps_the_top_half_centre() -> None:
    frame = coordinates(200, 200)
    crop = vr_crop(frame)
    assert crop.shape == (100, 100, 3)
    assert np.array_equal(crop, frame[:100, 50:150])
    assert (crop[0, 0, 0], crop[0, 0, 1]) == (0, 50)
    assert crop[-1, -1, 1] == 149


def test_a_ratio_of_exactly_1_5_is_over_under() -> None:
    frame = coordinates(100, 150)
    assert np.array_equal(vr_crop(frame), frame[:50, 37:112])


def test_odd_sizes_crop_with_floor_division() -> None:
    frame = coordinates(101, 303)
    assert np.array_equal(vr_crop(frame), frame[:, 151:])
    frame = coordinates(101, 101)
    assert np.array_equal(vr_crop(frame), frame[:50, 25:75])


def test_the_crop_is_contiguous() -> None:
    assert vr_crop(coordinates(100, 200)).flags["C_CONTIGUOUS"]


# ------------------------------------------------------------------------------ decoding real frames


def test_the_generated_file_is_what_the_tests_assume(dense_keyframes: Path) -> None:
    info = video.probe(dense_keyframes)
    assert (info.width, info.height, info.codec) == (WIDTH, HEIGHT, "h264")
    assert info.fps == FPS
    assert info.frame_count_estimate == FRAMES
    assert info.duration_s == pytest.approx(4.0)
    assert info.has_b_frames and info.timestamps_reliable and info.indexed
    assert info.keyframe_interval_s == pytest.approx(0.4)


@pytest.mark.parametrize("strategy", list(Strategy))
@pytest.mark.parametrize("interval", [0.4, 1.0, 2.0])
def test_every_strategy_samples_frame_k_times_step_at_k_times_interval(
    dense_any_container: Path, strategy: Strategy, interval: float
) -> None:
    iterator = video.iter_samples(dense_any_container, interval, strategy=strategy)
    plan = iterator.plan
    samples = collect(iterator)
    report = iterator.report

    assert [s.k for s in samples] == list(range(plan.expected_samples))
    assert [s.time_s for s in samples] == [k * interval for k in range(plan.expected_samples)]
    for sample in samples:
        assert sample.frame.shape == (HEIGHT, WIDTH, 3) and sample.frame.dtype == np.uint8
        # The pixels are the frame the sample claims to be…
        assert index_of(sample.frame) == sample.source_frame_index
        # …and that frame is k·step, exactly or within the strategy's documented tolerance.
        assert abs(sample.source_frame_index - sample.k * plan.step) <= plan.tolerance_frames
    assert report.strategy is strategy
    assert not report.partial, report.error
    assert report.samples == len(samples) == plan.expected_samples


def test_sequential_and_seek_take_exactly_the_same_frames(dense_keyframes: Path) -> None:
    by_count = collect(video.iter_samples(dense_keyframes, 1.0, strategy=Strategy.SEQUENTIAL))
    by_seek = collect(video.iter_samples(dense_keyframes, 1.0, strategy=Strategy.SEEK))
    assert (
        [s.source_frame_index for s in by_seek] == [s.source_frame_index for s in by_count] == [0, 25, 50, 75]
    )
    for a, b in zip(by_count, by_seek, strict=True):
        assert np.array_equal(a.frame, b.frame)


def test_skipping_non_reference_frames_decodes_fewer_frames(one_keyframe: Path) -> None:
    iterator = video.iter_samples(one_keyframe, 1.0, strategy=Strategy.SKIP_NONREF)
    samples = collect(iterator)
    assert len(samples) == 4
    # Every other frame is a non-reference B-frame here.
    assert iterator.report.decoded_frames <= FRAMES * 0.6


def test_skipping_b_frames_decodes_a_third_of_the_frames_and_gives_exact_pictures(media: Path) -> None:
    path = write_moving_video(media / "moving_ref1.mp4", references=1)
    assert video.probe(path).bidir_skippable
    everything = decode_all(path)
    assert len(everything) == FRAMES
    for interval in (0.4, 1.0):
        iterator = video.iter_samples(path, interval, strategy=Strategy.SKIP_BIDIR)
        samples = collect(iterator)
        step = iterator.plan.step
        assert [s.k for s in samples] == list(range(iterator.plan.expected_samples))
        for sample in samples:
            assert abs(sample.source_frame_index - sample.k * step) <= video.TOLERANCE_FRAMES
            # The very picture a full decode gives for that frame, not an approximation of it.
            assert np.array_equal(sample.frame, everything[sample.source_frame_index]), sample.k
        report = iterator.report
        assert report.strategy is Strategy.SKIP_BIDIR and not report.warnings
        assert not report.partial, report.error
        assert report.decoded_frames <= FRAMES * 0.3  # I- and P-frames: 1 in 4


def test_b_frames_that_p_frames_refer_to_are_not_skipped(media: Path) -> None:
    """x264's default (3 references, normal pyramid): P-frames are predicted from B-frames too, so
    decoding without the B-frames damages them. The plan skips only non-reference frames."""
    path = write_moving_video(media / "moving_ref3.mp4", references=3)
    everything = decode_all(path)
    without_b = decode_all(path, "BIDIR")
    damaged = [i for i, image in without_b.items() if not np.array_equal(image, everything[i])]
    assert damaged, "the premise: FFmpeg's BIDIR skipping damages P-frames of such a stream"

    info = video.probe(path)
    assert info.has_b_frames and not info.bidir_skippable
    assert sample_plan(info, 1.0).strategy is Strategy.SKIP_NONREF
    iterator = video.iter_samples(path, 1.0, info=info, strategy=Strategy.SKIP_BIDIR)
    assert iterator.plan.strategy is Strategy.SKIP_NONREF
    for sample in collect(iterator):
        assert np.array_equal(sample.frame, everything[sample.source_frame_index]), sample.k


def test_runs_of_b_frames_too_long_for_the_tolerance_fall_back_to_skipping_non_reference_frames(
    media: Path,
) -> None:
    # 5 B-frames: I/P frames 6 apart, so frame 9 (step 9) is 3 from the nearest one.
    path = write_video(media / "five_b.mp4", gop=250, b_frames=5)
    assert video.probe(path).bidir_skippable
    iterator = video.iter_samples(path, 0.36, strategy=Strategy.SKIP_BIDIR)
    samples = collect(iterator)
    report = iterator.report
    assert iterator.plan.step == 9
    assert [s.k for s in samples] == list(range(iterator.plan.expected_samples))
    for sample in samples:
        assert index_of(sample.frame) == sample.source_frame_index
        assert abs(sample.source_frame_index - sample.k * 9) <= video.TOLERANCE_FRAMES
    assert report.strategy is Strategy.SKIP_BIDIR and not report.partial, report.error
    assert any("B-frames around frame 9" in w and "non-reference" in w for w in report.warnings), (
        report.warnings
    )
    assert report.decoded_frames < FRAMES


def test_seeking_skips_whole_gops(dense_any_container: Path) -> None:
    iterator = video.iter_samples(dense_any_container, 2.0, strategy=Strategy.SEEK)
    assert [s.source_frame_index for s in collect(iterator)] == [0, 50]
    assert iterator.report.decoded_frames < FRAMES / 2


def test_the_seek_index_gives_the_keyframe_spacing(dense_any_container: Path) -> None:
    info = video.probe(dense_any_container)
    assert info.indexed and info.timestamps_reliable
    assert info.keyframe_interval_s == pytest.approx(0.4)
    assert sample_plan(info, 1.0).strategy is Strategy.SEEK


def test_the_plan_picks_seek_for_dense_keyframes_and_b_frame_skipping_for_one_long_gop(
    dense_keyframes: Path, one_keyframe: Path
) -> None:
    assert video.iter_samples(dense_keyframes, 1.0).plan.strategy is Strategy.SEEK
    # x264 with one reference frame: no P-frame refers to a B-frame.
    assert video.probe(one_keyframe).bidir_skippable
    assert video.iter_samples(one_keyframe, 1.0).plan.strategy is Strategy.SKIP_BIDIR


def test_without_b_frames_and_in_avi_frames_are_counted(media: Path) -> None:
    path = write_video(media / "mpeg4.avi", codec="mpeg4", gop=250)
    iterator = video.iter_samples(path, 1.0)
    assert iterator.plan.strategy is Strategy.SEQUENTIAL  # AVI: timestamps made up by the demuxer
    samples = collect(iterator)
    assert [index_of(s.frame) for s in samples] == [0, 25, 50, 75]
    assert iterator.report.decoded_frames == FRAMES


def test_an_interval_longer_than_the_video_yields_one_sample(dense_keyframes: Path) -> None:
    iterator = video.iter_samples(dense_keyframes, 60.0)
    samples = collect(iterator)
    assert [(s.k, s.time_s, s.source_frame_index) for s in samples] == [(0, 0.0, 0)]
    assert not iterator.report.partial


def test_vr_frames_are_cropped_before_they_are_returned(media: Path) -> None:
    path = write_video(media / "sbs.mp4", size=(128, 48), frames=10)
    samples = collect(video.iter_samples(path, 0.2, vr=True))
    assert [s.frame.shape for s in samples] == [(48, 64, 3)] * 2


def test_a_display_rotation_is_applied_like_ffmpegs_autorotate(media: Path) -> None:
    path = media / "rotated.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.set_display_rotation(90)  # 90° counter-clockwise, as the display matrix defines it
        for i in range(5):
            image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            image[:, : WIDTH // 2] = 255  # left half white
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    (sample,) = collect(video.iter_samples(path, 1.0))
    assert sample.frame.shape == (WIDTH, HEIGHT, 3)
    # Turned counter-clockwise, the left half ends at the bottom.
    assert sample.frame[-5:].mean() > 200 and sample.frame[:5].mean() < 50


def test_report_exists_only_once_iteration_ends(dense_keyframes: Path) -> None:
    iterator = video.iter_samples(dense_keyframes, 1.0)
    with pytest.raises(RuntimeError, match="report"):
        _ = iterator.report
    next(iterator)
    iterator.close()
    assert iterator.report.partial
    assert iterator.report.samples == 1
    assert "stopped by the caller" in (iterator.report.error or "")


def test_the_iterator_yields_one_sample_at_a_time(dense_keyframes: Path) -> None:
    """Pull-based: nothing is decoded ahead of the caller beyond FFmpeg's own thread buffers."""
    iterator = video.iter_samples(dense_keyframes, 0.4)
    assert isinstance(iterator, Iterator)
    first = next(iterator)
    assert first.k == 0 and iterator._samples == 1
    iterator.close()


# ------------------------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaNotFound, match="not found"):
        video.probe(tmp_path / "nope.mp4")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(InvalidInput, match="0 bytes"):
        video.iter_samples(path, 2.0)


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 100)
    with pytest.raises(InvalidInput, match="not a video"):
        video.probe(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="directory"):
        video.probe(tmp_path)


def test_still_image(tmp_path: Path) -> None:
    path = tmp_path / "photo.mp4"  # the extension does not fool the check
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path, format="PNG")
    with pytest.raises(InvalidInput, match="still image"):
        video.probe(path)


def test_audio_only(tmp_path: Path) -> None:
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        frame.pts = 0
        frame.time_base = Fraction(1, 8000)
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(InvalidInput, match="no video stream"):
        video.probe(path)


def test_invalid_interval_through_iter_samples(dense_keyframes: Path) -> None:
    with pytest.raises(InvalidInput, match="frame_interval"):
        video.iter_samples(dense_keyframes, 0)


def test_a_truncated_file_yields_what_decodes_and_says_it_is_partial(media: Path, tmp_path: Path) -> None:
    # The index at the front (faststart), so the header announces all 100 frames after the cut.
    whole = write_video(media / "faststart.mp4", gop=10, muxer_options={"movflags": "faststart"})
    assert whole.read_bytes().find(b"moov") < whole.read_bytes().find(b"mdat")
    data = whole.read_bytes()
    frames_start = data.find(b"mdat") + 4
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: frames_start + (len(data) - frames_start) // 2])  # half the coded frames
    for strategy in Strategy:
        iterator = video.iter_samples(cut, 0.4, strategy=strategy)
        samples = collect(iterator)  # never raises once samples went out
        report = iterator.report
        assert 0 < len(samples) < 10
        assert all(index_of(s.frame) == s.source_frame_index for s in samples)
        assert report.partial
        assert report.error and "header announces" in report.error


def test_a_video_with_no_decodable_frame_raises(media: Path, tmp_path: Path) -> None:
    whole = write_video(media / "faststart_for_garbage.mp4", gop=10, muxer_options={"movflags": "faststart"})
    data = bytearray(whole.read_bytes())
    # Keep the header (moov, before mdat), overwrite every coded frame with zeros.
    mdat = data.find(b"mdat") + 4
    data[mdat:] = bytes(len(data) - mdat)
    broken = tmp_path / "zeros.mp4"
    broken.write_bytes(bytes(data))
    iterator = video.iter_samples(broken, 1.0, strategy=Strategy.SEQUENTIAL)
    with pytest.raises(InvalidInput, match="no decodable video frames"):
        next(iterator)
    assert iterator.report.partial


def test_probe_reports_a_header_that_overstates_the_stream_within_a_second_as_complete(
    dense_keyframes: Path,
) -> None:
    # The header claiming 20 frames (0.8 s) more than exist is common (audio longer than video).
    info = replace(video.probe(dense_keyframes), frame_count_estimate=FRAMES + 20)
    iterator = video.SampleIterator(dense_keyframes, info, sample_plan(info, 1.0))
    samples = collect(iterator)
    assert len(samples) == 4
    assert iterator.report.expected_samples == 5
    assert not iterator.report.partial
