"""The original AITagger server's compute path on the CPU, reproduced in-process, as the baseline
that issue 16's targets are measured against in the same run (bench/bench_vs_original.py).

What the original (skier233 nsfw_ai_model_server 3.2.1) does on a CPU, from
../shared/docs/aitagger-contract.md (3.3-3.5) and ../shared/models/skier233-standin/README.md:

- images: decode as RGB, resize to S x S bicubic with antialias (aspect not kept), scale to [0, 1],
  normalise (CLIP mean/std: its `normalization_config or 1`), the TorchScript model under
  `torch.autocast` in bf16, sigmoid; batch 1 on a CPU; one preprocessor worker feeding the model
  worker through a queue as long as the batch (back-pressure), so decoding the next image overlaps
  inference of this one;
- video: FFmpeg decodes every frame (its default frame threading), `select='not(mod(n,step))'`
  keeps every step-th (step = round(fps x frame_interval)), each kept frame becomes RGB, then the
  same resize, normalisation and model.

Two substitutions, both in the original's favour or neutral, said where the figures are printed:
torchvision's decoder and resize are replaced by Pillow's (the original's own path on ROCm; the
CPU wheel of torchvision cannot be installed from PyPI, whose Linux build needs CUDA's torch), and
FFmpeg's CLI by PyAV (the same libavcodec, threads on, every frame decoded). The [0, 1] scaling
and normalisation run in fp32, not fp16 (cheaper on a CPU without fp16 arithmetic)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

CLIP_MEAN = np.asarray([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.asarray([0.26862954, 0.26130258, 0.27577711], np.float32)
SIZE = 512
_DONE = object()


@dataclass
class OriginalRun:
    items: int  # images, or sampled frames
    seconds: float
    preprocess_seconds: float  # decode + resize + tensor, summed in the preprocessor thread
    infer_seconds: float  # model time, summed in the model thread

    @property
    def per_s(self) -> float:
        return self.items / self.seconds

    def as_json(self) -> dict[str, float]:
        return {
            "items": self.items,
            "seconds": round(self.seconds, 3),
            "per_s": round(self.per_s, 3),
            "preprocess_ms_each": round(self.preprocess_seconds / max(1, self.items) * 1e3, 2),
            "infer_ms_each": round(self.infer_seconds / max(1, self.items) * 1e3, 2),
        }


def to_tensor(rgb: Image.Image) -> npt.NDArray[np.float32]:
    """Bicubic with antialias to SIZE x SIZE, [0, 1], CLIP mean/std, CHW."""
    resized = np.asarray(rgb.resize((SIZE, SIZE), Image.Resampling.BICUBIC), np.float32)
    normalised = (resized / 255.0 - CLIP_MEAN) / CLIP_STD
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def image_tensors(paths: list[Path]) -> Iterator[npt.NDArray[np.float32]]:
    for path in paths:
        with Image.open(path) as image:
            yield to_tensor(image.convert("RGB"))


def video_tensors(path: Path, frame_interval: float) -> Iterator[npt.NDArray[np.float32]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg's CLI decodes with frame threads by default
        fps = float(stream.average_rate or stream.guessed_rate or 30)
        step = max(1, round(fps * frame_interval))
        for index, frame in enumerate(container.decode(stream)):
            if index % step == 0:
                yield to_tensor(frame.to_image())


class AutocastModel:
    """The stand-in's TorchScript under torch.autocast(bf16) on the CPU, batch 1, with sigmoid."""

    def __init__(self, pt_path: Path, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = torch.jit.load(str(pt_path), map_location="cpu").eval()  # type: ignore[no-untyped-call]
        self(np.zeros((3, SIZE, SIZE), np.float32))  # the first call compiles; out of the timing

    def __call__(self, tensor: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        torch = self.torch
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = self.model(torch.from_numpy(tensor)[None])
        return np.asarray(torch.sigmoid(logits.float()).numpy(), np.float32)


def run_pipeline(
    model: AutocastModel, tensors: Callable[[], Iterator[npt.NDArray[np.float32]]]
) -> OriginalRun:
    """The preprocessor in its own thread, the model in this one, a queue of one between them."""
    handoff: queue.Queue[Any] = queue.Queue(maxsize=1)
    spent = {"preprocess": 0.0}
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            source = tensors()
            while True:
                started = time.perf_counter()
                tensor = next(source, None)
                spent["preprocess"] += time.perf_counter() - started
                if tensor is None:
                    break
                handoff.put(tensor)
        except BaseException as error:  # handed to the caller below, not lost in the thread
            failure.append(error)
        finally:
            handoff.put(_DONE)

    started = time.perf_counter()
    producer = threading.Thread(target=produce, name="original-preprocessor", daemon=True)
    producer.start()
    items = 0
    infer = 0.0
    while (item := handoff.get()) is not _DONE:
        t0 = time.perf_counter()
        model(item)
        infer += time.perf_counter() - t0
        items += 1
    producer.join()
    if failure:
        raise failure[0]
    return OriginalRun(items, time.perf_counter() - started, spent["preprocess"], infer)
