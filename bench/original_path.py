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

The resize is torchvision's: its Resize on a uint8 tensor is torch's own
`interpolate(mode="bicubic", antialias=True)`, called here directly (torchvision itself cannot be
installed from PyPI beside the CPU build of torch: its Linux wheel needs CUDA's). Substitutions,
neutral or in the original's favour, said where the figures are printed: JPEG and PNG decoding by
OpenCV (libjpeg-turbo and libpng, as torchvision's decode_image uses), FFmpeg's CLI by PyAV (the
same libavcodec, threads on, every frame decoded), and the [0, 1] scaling and normalisation in
fp32 instead of fp16 (cheaper on a CPU without fp16 arithmetic)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt

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


def decode_rgb(data: bytes) -> npt.NDArray[np.uint8]:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)


def resize(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """torchvision's Resize((SIZE, SIZE), BICUBIC, antialias=True) on the uint8 HWC picture."""
    import torch
    from torch.nn.functional import interpolate

    pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    resized = interpolate(pixels, size=(SIZE, SIZE), mode="bicubic", antialias=True, align_corners=False)
    return np.asarray(resized[0].permute(1, 2, 0).numpy(), np.uint8)


def normalise(resized: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """[0, 1] and CLIP mean/std, CHW float32."""
    scaled = resized.astype(np.float32) / 255.0
    return np.ascontiguousarray(((scaled - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1))


def to_tensor(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    return normalise(resize(rgb))


def image_tensors(paths: list[Path]) -> Iterator[npt.NDArray[np.float32]]:
    for path in paths:
        yield to_tensor(decode_rgb(path.read_bytes()))


def video_tensors(path: Path, frame_interval: float) -> Iterator[npt.NDArray[np.float32]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg's CLI decodes with frame threads by default
        fps = float(stream.average_rate or stream.guessed_rate or 30)
        step = max(1, round(fps * frame_interval))
        for index, frame in enumerate(container.decode(stream)):
            if index % step == 0:
                yield to_tensor(frame.to_ndarray(format="rgb24"))


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
