"""Samples frames from a video file the way the original AITagger server does (contract §3.4), with
PyAV (FFmpeg ships inside its wheel).

Sampling contract: `step = max(1, round(fps × frame_interval))`, frames n = 0, step, 2·step, … in the
decoder's output order, and the k-th sample is reported at `k × frame_interval` (a nominal grid: at
29.97 fps and step 60 it drifts from true time by 0.1 %, 3.6 s over an hour). VR frames are cropped
before any resize; frames carrying a display rotation are turned upright like FFmpeg's CLI does.

The package, in the order a file goes through it:

* `probing`: `probe` reads the header and a bounded run of packets (no decoding) into `VideoInfo`;
* `strategy`: `sample_plan` picks the frames and one of four ways to reach them (`Strategy`:
  SEQUENTIAL, SKIP_NONREF, SKIP_BIDIR, SEEK), with the tolerance and downgrade rules;
* `sampler`: `iter_samples` / `SampleIterator` decode and yield each `Sample`;
* `report`: the `DecodeReport` saying how decoding went (partial results, warnings);
* `frames`: a decoded frame as upright BGR (`upright_bgr`) and the VR crop (`vr_crop`).

Callers use the names re-exported here (`video.probe`, `video.iter_samples`, …), not the modules.
"""

from __future__ import annotations

from .frames import upright_bgr, vr_crop
from .probing import VideoInfo, probe
from .report import DecodeReport
from .sampler import Sample, SampleIterator, iter_samples
from .strategy import TOLERANCE_FRAMES, SamplePlan, Strategy, sample_plan

__all__ = [
    "TOLERANCE_FRAMES",
    "DecodeReport",
    "Sample",
    "SampleIterator",
    "SamplePlan",
    "Strategy",
    "VideoInfo",
    "iter_samples",
    "probe",
    "sample_plan",
    "upright_bgr",
    "vr_crop",
]
