"""The decode report: what `SampleIterator` tallies while it decodes (`DecodeTally`) and how that
becomes the `DecodeReport` callers read once iteration ends. This is where it is decided which
shortfalls make a result partial (the file ending early, samples without a frame near enough, the
caller stopping) and which are only warnings (rejected packets, an abandoned strategy); a header
that overstates the stream by up to a second is neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .probing import VideoInfo
from .strategy import TOLERANCE_FRAMES, SamplePlan, Strategy


@dataclass(frozen=True)
class DecodeReport:
    samples: int
    expected_samples: int
    """From the header; the last one may legitimately be missing when the header overstates the
    stream by less than a second (or 2 %), which is not reported as partial."""
    decoded_frames: int
    partial: bool
    error: str | None
    """Why the result is partial (None when it is not)."""
    strategy: Strategy
    """The strategy that produced the samples (after any fallback)."""
    warnings: tuple[str, ...]
    """Problems that cost no sample: packets the decoder rejected, a strategy abandoned."""
    elapsed_s: float


@dataclass
class DecodeTally:
    """Counts kept by the iterator while it decodes, for its report (the samples it yielded it
    counts itself)."""

    decoded: int = 0
    last_index: int = -1
    """Index of the latest frame decoded (-1: none yet)."""
    last_time: float | None = None
    missing: int = 0
    """Samples with no decodable frame within the tolerance."""
    complete_by_header: bool = False
    """SEEK stopped at the last frame the container counts, without decoding to the end."""
    stop_error: str | None = None
    """Why decoding stopped before the end of the stream."""
    decode_errors: int = 0
    first_decode_error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def report(
        self,
        info: VideoInfo,
        plan: SamplePlan,
        strategy: Strategy,
        samples: int,
        elapsed_s: float,
        *,
        stopped: bool,
        failure: str | None,
    ) -> DecodeReport:
        problems: list[str] = [failure] if failure else []
        if stopped:
            problems.append(f"stopped by the caller after {samples} samples")
        if self.stop_error:
            problems.append(self.stop_error)
        if self.missing:
            problems.append(
                f"{self.missing} samples had no decodable frame within {TOLERANCE_FRAMES} frames of their position"
            )
        # A header that overstates the stream by up to a second (or 2 %) is common (audio longer
        # than video, rounding); beyond that the file ends or stops decoding early.
        margin = max(round(info.fps), math.ceil(0.02 * info.frame_count_estimate))
        ended_early = self.last_index < info.frame_count_estimate - 1 - margin
        if not stopped and not self.complete_by_header and ended_early:
            reached = "" if self.last_time is None else f", the last at {self.last_time:.1f} s"
            problems.append(
                f"only {self.last_index + 1} of the {info.frame_count_estimate} frames the header announces "
                f"could be decoded{reached} of {info.duration_s:.1f} s; "
                f"{samples} of {plan.expected_samples} samples"
            )
        warnings = list(self.warnings)
        if self.decode_errors:
            warnings.append(
                f"{self.decode_errors} packets could not be decoded (first: {self.first_decode_error})"
            )
        return DecodeReport(
            samples=samples,
            expected_samples=plan.expected_samples,
            decoded_frames=self.decoded,
            partial=bool(problems),
            error="; ".join(problems) or None,
            strategy=strategy,
            warnings=tuple(warnings),
            elapsed_s=elapsed_s,
        )
