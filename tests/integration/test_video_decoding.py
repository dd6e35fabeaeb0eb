"""Sampling real videos from the shared testdata (opencv-doc files: AVI with MS-MPEG4v3, FMP4 with
packed B-frames, H.264 MP4 with and without usable timestamps, and a partly corrupt Cinepak AVI),
checked against the arithmetic of contract §3.4: step = round(fps × interval), frames k·step, time
k × interval. A missing file fails the test (shared_file); nothing is skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stash_vision.server.errors import InvalidInput
from stash_vision.server.media import video
from stash_vision.server.media.video import Sample, SampleIterator, Strategy
from tests.conftest import shared_file

pytestmark = pytest.mark.integration


def sampled(
    path: Path, interval: float, *, vr: bool = False, strategy: Strategy | None = None
) -> tuple[list[Sample], SampleIterator]:
    iterator = video.iter_samples(path, interval, vr=vr, strategy=strategy)
    with iterator:
        samples = list(iterator)
    return samples, iterator


def assert_grid(samples: list[Sample], step: int, interval: float) -> None:
    assert [s.k for s in samples] == list(range(len(samples)))
    assert [s.source_frame_index for s in samples] == [k * step for k in range(len(samples))]
    assert [s.time_s for s in samples] == [k * interval for k in range(len(samples))]


def test_vtest_avi_every_2_s_gives_40_samples_of_795_frames() -> None:
    path = shared_file("testdata/video/vtest.avi")
    info = video.probe(path)
    assert info.duration_s == pytest.approx(79.5)
    assert info.fps == pytest.approx(10.0)
    assert (info.width, info.height) == (768, 576)
    assert info.frame_count_estimate == 795

    samples, iterator = sampled(path, 2.0)
    assert iterator.plan.step == 20
    assert len(samples) == iterator.plan.expected_samples == 40  # frames 0, 20, …, 780
    assert_grid(samples, 20, 2.0)
    assert samples[-1].time_s == 78.0
    assert all(s.frame.shape == (576, 768, 3) and s.frame.dtype == np.uint8 for s in samples)
    report = iterator.report
    assert not report.partial and report.error is None
    assert report.decoded_frames == 795


def test_vtest_vr_crop_is_over_under_for_a_4_3_frame() -> None:
    samples, _ = sampled(shared_file("testdata/video/vtest.avi"), 20.0, vr=True)
    assert [s.frame.shape for s in samples] == [(288, 384, 3)] * 4


def test_megamind_avi_packed_b_frames_are_counted() -> None:
    path = shared_file("testdata/video/Megamind.avi")
    info = video.probe(path)
    assert info.fps == pytest.approx(23.976, abs=1e-3)
    assert info.duration_s == pytest.approx(11.26, abs=0.01)
    samples, iterator = sampled(path, 2.0)
    assert iterator.plan.step == 48  # round(47.95)
    assert iterator.plan.strategy is Strategy.SEQUENTIAL  # AVI timestamps are made up by the demuxer
    assert len(samples) == 6  # 270 frames: 0, 48, …, 240
    assert_grid(samples, 48, 2.0)
    assert samples[0].frame.shape == (528, 720, 3)
    assert not iterator.report.partial


def test_box_mp4_decodes_455_of_456_announced_frames_without_being_partial() -> None:
    path = shared_file("testdata/video/box.mp4")
    info = video.probe(path)
    assert info.header_frames == 456
    # B-frames but no composition offsets: its timestamps are decode times, so frames are counted.
    assert info.has_b_frames and not info.timestamps_reliable
    samples, iterator = sampled(path, 2.0)
    assert iterator.plan.step == 60  # 29.97 × 2
    assert len(samples) == 8  # 0, 60, …, 420
    assert_grid(samples, 60, 2.0)
    report = iterator.report
    assert report.decoded_frames == 455
    assert not report.partial, report.error


def test_box_mp4_refuses_timestamp_strategies_and_falls_back_to_counting() -> None:
    samples, iterator = sampled(shared_file("testdata/video/box.mp4"), 2.0, strategy=Strategy.SKIP_NONREF)
    assert_grid(samples, 60, 2.0)
    assert iterator.report.strategy is Strategy.SEQUENTIAL
    assert any("abandoned" in warning for warning in iterator.report.warnings)


def test_cup_mp4_seeks_and_gets_the_same_frames_as_decoding_everything() -> None:
    path = shared_file("testdata/video/cup.mp4")
    info = video.probe(path)
    assert info.fps == pytest.approx(26.777)
    assert info.keyframe_interval_s == pytest.approx(30 / 26.777, rel=0.01)
    seek, seeking = sampled(path, 2.0)
    assert seeking.plan.strategy is Strategy.SEEK
    assert seeking.plan.step == 54
    assert len(seek) == 5  # 217 frames: 0, 54, 108, 162, 216
    assert_grid(seek, 54, 2.0)
    assert seeking.report.decoded_frames < info.frame_count_estimate
    everything, counting = sampled(path, 2.0, strategy=Strategy.SEQUENTIAL)
    assert counting.report.decoded_frames == 217
    for a, b in zip(seek, everything, strict=True):
        assert np.array_equal(a.frame, b.frame)
    assert not seeking.report.partial and not counting.report.partial


def test_tree_avi_is_partial_with_samples_from_the_decodable_part_only() -> None:
    path = shared_file("testdata/video/tree.avi")
    info = video.probe(path)
    assert info.header_frames == 444
    samples, iterator = sampled(path, 2.0)  # never raises
    report = iterator.report
    assert iterator.plan.step == 30  # 15 fps
    assert report.expected_samples == 15
    assert report.decoded_frames == 68
    assert [s.source_frame_index for s in samples] == [0, 30, 60]  # all that 68 frames hold
    assert report.samples == 3
    assert report.partial
    assert report.error is not None and "68" in report.error and "444" in report.error


def test_text_file_named_mp4_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "readme.mp4"
    path.write_text("not a video at all\n" * 50)
    with pytest.raises(InvalidInput, match="not a video"):
        video.iter_samples(path, 2.0)


def test_zero_byte_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.avi"
    path.write_bytes(b"")
    with pytest.raises(InvalidInput, match="0 bytes"):
        video.iter_samples(path, 2.0)


def test_a_real_file_cut_short_is_partial(tmp_path: Path) -> None:
    """vtest.avi without its second half (and without the index at its end)."""
    data = shared_file("testdata/video/vtest.avi").read_bytes()
    cut = tmp_path / "vtest_cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    samples, iterator = sampled(cut, 2.0)
    report = iterator.report
    assert 0 < len(samples) < 40
    assert_grid(samples, 20, 2.0)
    assert report.partial and report.error
