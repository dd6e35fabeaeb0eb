"""Sampling strategy choice (contract §3.4): `sample_plan` turns a probed `VideoInfo` and a frame
interval into the frames to sample and the `Strategy` that reaches them. The four strategies:

* SEQUENTIAL decodes every frame and counts them: exactly FFmpeg's `select='not(mod(n,step))'`. It
  is the only one that does not trust timestamps, so it is used for every file whose timestamps
  are not trustworthy (AVI, B-frames without composition offsets, variable frame rate).
* SKIP_NONREF decodes every packet but lets the decoder drop non-reference frames (usually the
  B-frames: about half the decoding work) and takes, for each sample, the nearest decoded frame by
  presentation time.
* SKIP_BIDIR lets the decoder drop every B-frame, reference or not, and decodes only I- and
  P-frames (with 3 B-frames, a quarter of the frames). That is exact only where no I- or P-frame
  refers to a B-frame: x264 with `b-pyramid` none or strict, or a single reference frame, which
  `probe` reads from the settings x264 writes into the stream. Elsewhere (x264's default of 3
  references with a normal pyramid, other encoders) P-frames predicted from skipped B-frames
  would come out damaged, and SKIP_NONREF is used instead.
* SEEK jumps to the keyframe before a sample whenever the container's index shows one ahead of
  the current position, then decodes forward to the exact frame. It never goes back, so it is
  never slower than decoding through by more than the cost of the seeks themselves.

The tolerance of the timestamp-based strategies is TOLERANCE_FRAMES: a sample may come from a frame
up to 2 frames (≤ 83 ms at 24 fps) away from frame k·step, far below the contract grid's own drift
(see the package docstring). SEEK decodes every frame from the keyframe on, so it finds the exact
frame unless the stream lacks it. The skipping strategies rely on the tolerance (x264's B-pyramid
leaves single non-reference frames between references, 1 frame away; 3 B-frames leave I/P frames 4
apart, at most 2 frames from any target); where a run of skipped frames is longer, the sampler
decodes that stretch again from its keyframe skipping less (`SKIP_LEVELS`: SKIP_BIDIR continues as
SKIP_NONREF, SKIP_NONREF without skipping) for the rest of the file. Any sign that the timestamps do
not match the frame order (a frame going backwards, sample 0 missing) restarts the file as
SEQUENTIAL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from stash_vision.server.errors import InvalidInput

from .probing import VideoInfo

TOLERANCE_FRAMES: Final = 2
"""How far (in frames) a timestamp-based strategy may stray from frame k·step for sample k."""

# Below this step nearly every frame is a sample, so there is nothing to skip, and with the
# tolerance two samples could land on one frame.
_MIN_STEP_FOR_SKIPPING: Final = 2 * TOLERANCE_FRAMES + 1

# Seek-per-sample is chosen when keyframes are at most this many steps apart. Measured on 60 s of
# 1080p H.264 with 3 B-frames, 2 cores (CPU seconds): SKIP_NONREF costs 0.65 of a full decode; with
# 1 s GOPs SEEK beat it at step 1.1 GOP (7.5 vs 8.6 s) and lost at step 0.7 GOP (9.3 vs 8.6 s).
# Without B-frames there is nothing cheaper than a full decode to compare with, and SEEK, which
# only seeks when the index shows a keyframe ahead, skips every GOP that holds no sample.
_SEEK_MAX_GOP_STEPS_WITH_B_FRAMES: Final = 1.0
_SEEK_MAX_GOP_STEPS: Final = 2.0
# SKIP_BIDIR decodes only the I- and P-frames (0.3 of the frames with 3 B-frames), so seeking must
# skip more to win. Measured on 20 s of 1080p H.264 (3 B-frames, 1 s GOPs), process CPU seconds,
# SKIP_BIDIR against SEEK: 1.17 vs 1.45 at step 1.3 GOP, 1.25 vs 1.0 at 1.5, 1.2 vs 1.15 at 1.7,
# 1.15 vs 0.44 at 2.0 (samples on keyframes); SKIP_BIDIR won every step below 1.3 GOP.
_SEEK_MAX_GOP_STEPS_WITH_BIDIR: Final = 0.7


class Strategy(StrEnum):
    SEQUENTIAL = "sequential"
    SKIP_NONREF = "skip_nonref"
    SKIP_BIDIR = "skip_bidir"
    SEEK = "seek"


@dataclass(frozen=True)
class SamplePlan:
    frame_interval: float
    step: int
    frame_indices: range
    """Frames the contract samples: 0, step, 2·step, … below frame_count_estimate."""
    expected_samples: int
    strategy: Strategy
    tolerance_frames: int
    """0 for SEQUENTIAL (frames counted, exact); TOLERANCE_FRAMES for the timestamp strategies."""
    reason: str
    """Why this strategy, for logs."""

    def time_of(self, k: int) -> float:
        return k * self.frame_interval


def sample_plan(info: VideoInfo, frame_interval: float, *, strategy: Strategy | None = None) -> SamplePlan:
    """The frames to sample and how to reach them. `strategy` overrides the choice (tests and
    measurements), except that steps below 5 are always counted; an override that needs
    timestamps still falls back to SEQUENTIAL at decode time if the timestamps turn out unusable.

    frame_interval must be a finite number of seconds > 0. One larger than the video gives exactly
    one sample, at 0 s: step exceeds the frame count, so only frame 0 qualifies, as with FFmpeg's
    select filter (a short clip still gets tagged instead of refused)."""
    if (
        not isinstance(frame_interval, int | float)
        or not math.isfinite(frame_interval)
        or frame_interval <= 0
    ):
        raise InvalidInput(f"frame_interval must be a number of seconds > 0, got {frame_interval!r}")
    step = max(1, round(info.fps * frame_interval))
    expected = max(1, math.ceil(info.frame_count_estimate / step))
    if strategy is None:
        chosen, reason = _choose_strategy(info, step)
    elif strategy is not Strategy.SEQUENTIAL and step < _MIN_STEP_FOR_SKIPPING:
        # With the tolerance, neighbouring samples could share a frame: counting is the only way.
        chosen, reason = Strategy.SEQUENTIAL, f"{strategy} requested, but step {step} needs counting"
    elif strategy is Strategy.SKIP_BIDIR and not info.bidir_skippable:
        # Skipping B-frames that P-frames refer to would damage the pictures, not just move samples.
        chosen, reason = Strategy.SKIP_NONREF, f"{strategy} requested, but P-frames may refer to B-frames"
    else:
        chosen, reason = strategy, "requested"
    return SamplePlan(
        frame_interval=float(frame_interval),
        step=step,
        frame_indices=range(0, expected * step, step),
        expected_samples=expected,
        strategy=chosen,
        tolerance_frames=0 if chosen is Strategy.SEQUENTIAL else TOLERANCE_FRAMES,
        reason=reason,
    )


def _choose_strategy(info: VideoInfo, step: int) -> tuple[Strategy, str]:
    """The rule, in order:
    1. timestamps not usable to identify frames → SEQUENTIAL (counting is the only exact way);
    2. step < 5 → SEQUENTIAL (almost every frame is a sample: nothing to skip);
    3. a seek index and keyframes at most one step apart (0.7 of a step where only I- and P-frames
       need decoding, two without B-frames) → SEEK;
    4. B-frames that no I- or P-frame refers to → SKIP_BIDIR;
    5. other B-frames → SKIP_NONREF;
    6. otherwise SEQUENTIAL."""
    if not info.timestamps_reliable:
        return Strategy.SEQUENTIAL, "frames must be counted (timestamps not usable to identify frames)"
    if step < _MIN_STEP_FOR_SKIPPING:
        return Strategy.SEQUENTIAL, f"step {step} < {_MIN_STEP_FOR_SKIPPING}: nearly every frame is sampled"
    gop = info.keyframe_interval_frames
    bidir = info.has_b_frames and info.bidir_skippable
    if not info.has_b_frames:
        limit = _SEEK_MAX_GOP_STEPS
    elif bidir:
        limit = _SEEK_MAX_GOP_STEPS_WITH_BIDIR
    else:
        limit = _SEEK_MAX_GOP_STEPS_WITH_B_FRAMES
    if info.indexed and gop is not None and gop <= limit * step:
        return Strategy.SEEK, f"keyframes every {gop:.0f} frames, step {step}: seeking skips whole GOPs"
    if bidir:
        return Strategy.SKIP_BIDIR, "B-frames no I/P frame refers to: the decoder skips every B-frame"
    if info.has_b_frames:
        return Strategy.SKIP_NONREF, "B-frames: the decoder skips non-reference frames"
    return Strategy.SEQUENTIAL, "keyframes too sparse to seek and no B-frames to skip"


# The decoder's skip_frame levels of each skipping strategy, from the most skipping.
SkipLevel = Literal["BIDIR", "NONREF"]
SKIP_LEVELS: Final[dict[Strategy, tuple[SkipLevel, ...]]] = {
    Strategy.SKIP_BIDIR: ("BIDIR", "NONREF"),
    Strategy.SKIP_NONREF: ("NONREF",),
}
SKIPPED_FRAMES: Final[dict[SkipLevel, str]] = {"BIDIR": "B-frames", "NONREF": "non-reference frames"}
