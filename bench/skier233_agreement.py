"""Agreement of an imported skier233 model with the original server's golden answers, in process.

Imports the stand-in package (shared/models/skier233-standin) into a throw-away data directory
with the importer a user runs, then, on the server's own decode (`decode_image`, video
`iter_samples`) and `preprocess` with the imported input contract, runs the ONNX file in ONNX
Runtime and compares with every golden response of the original server (shared/testdata/golden):

* images: per image, the tag set at the request's threshold, against the golden tag set;
* videos: per sampled frame, the tag set at the request's threshold and each tag's confidence,
  against the per-frame runs in the golden `json_result` (confidences there are rounded to 2
  decimals and only present above the threshold; a tag absent there counts as the threshold).

`--normalization` overrides the imported contract's mean/std (0 = ImageNet, 1 = CLIP), so the
same script measures the importer's choice and the alternative:

    .venv/bin/python -m bench.skier233_agreement                    # what the importer records
    .venv/bin/python -m bench.skier233_agreement --normalization 0  # ImageNet: the YAML at its word

Needs STASH_VISION_SHARED_DIR (default /work/shared)."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stash_vision.catalog.entries import CatalogEntry, InputContract
from stash_vision.catalog.importers import NORMALIZATIONS, import_skier233
from stash_vision.server.media import video
from stash_vision.server.media.images import ImageLimits, decode_image
from stash_vision.server.preprocessing import preprocess
from stash_vision.server.tagging.aitagger_format.categories import load_category_dir

MODEL = "vivid_galaxy_standin"
LIMITS = ImageLimits(max_pixels=100_000_000, max_file_bytes=256 * 2**20)
# Confidences closer than this to the threshold may fall either way in the original's bf16 run.
TOLERANCE = 0.01


@dataclass
class Tally:
    items: int = 0
    same_tags: int = 0
    same_within_tolerance: int = 0
    differences: list[float] = field(default_factory=list)
    signed: list[float] = field(default_factory=list)

    def line(self, what: str) -> str:
        text = (
            f"{what}: identical tag sets {self.same_tags}/{self.items}, "
            f"equal up to tags within {TOLERANCE} of the threshold {self.same_within_tolerance}/{self.items}"
        )
        if self.differences:
            diffs = np.asarray(self.differences)
            text += (
                f"; |confidence difference| over {diffs.size} golden (frame, tag) pairs: "
                f"mean {diffs.mean():.4f}, max {diffs.max():.4f}, mean signed (ours - original) "
                f"{np.mean(self.signed):+.4f}"
            )
        return text


class Scorer:
    def __init__(self, entry: CatalogEntry, weights: Path, contract: InputContract) -> None:
        assert entry.tagger is not None and entry.tagger.tags_file is not None
        self.tags = (entry.folder / entry.tagger.tags_file).read_text(encoding="utf-8").splitlines()
        actions = load_category_dir(entry.folder / "categories").get("actions")
        assert actions is not None
        self.renamed = {t.original_tag: t.renamed_tag for t in actions.tags.values()}
        self.contract = contract
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        self.session = ort.InferenceSession(str(weights), options, providers=["CPUExecutionProvider"])

    def probabilities(self, bgr: np.ndarray) -> dict[str, float]:
        tensor, _ = preprocess(bgr, self.contract)
        (logits,) = self.session.run(["OUTPUT__0"], {"INPUT__0": tensor[None]})
        values = 1 / (1 + np.exp(-logits[0].astype(np.float64)))
        return dict(zip(self.tags, values.tolist(), strict=True))


def same_up_to_tolerance(ours: dict[str, float], theirs: set[str], threshold: float) -> bool:
    mine = {tag for tag, p in ours.items() if p > threshold}
    return all(abs(ours[tag] - threshold) <= TOLERANCE for tag in mine ^ theirs)


def images(shared: Path, golden: Path, scorer: Scorer, tally: Tally) -> None:
    for request_file in sorted(golden.glob("process_images*.request.json")):
        request = json.loads(request_file.read_text())
        response = json.loads(
            request_file.with_name(request_file.name.replace("request", "response")).read_text()
        )
        threshold = request["threshold"]
        for path, result in zip(request["paths"], response["body"]["result"], strict=True):
            if "error" in result:
                continue
            file = Path(path) if path.startswith("/") else shared / path
            ours = scorer.probabilities(decode_image(file.read_bytes(), LIMITS))
            original = {t for t in scorer.tags if scorer.renamed[t] in result["actions"]}
            tally.items += 1
            tally.same_tags += {t for t, p in ours.items() if p > threshold} == original
            tally.same_within_tolerance += same_up_to_tolerance(ours, original, threshold)


def golden_frames(json_result: str, frame_interval: float) -> dict[float, dict[str, float]]:
    """Per nominal time, each tag's golden confidence (runs expanded to their frames)."""
    stored = json.loads(json_result)
    frames: dict[float, dict[str, float]] = {}
    for tags in stored["timespans"].values():
        for tag, runs in tags.items():
            for run in runs:
                start, end = run["start"], run.get("end", run["start"])
                count = round((end - start) / frame_interval) + 1
                for k in range(count):
                    frames.setdefault(round(start + k * frame_interval, 6), {})[tag] = run["confidence"]
    return frames


def videos(shared: Path, golden: Path, scorer: Scorer, tally: Tally) -> None:
    for request_file in sorted(golden.glob("process_video*.request.json")):
        response = json.loads(
            request_file.with_name(request_file.name.replace("request", "response")).read_text()
        )
        if response["http_status"] != 200:
            continue
        request = json.loads(request_file.read_text())
        threshold, interval = request["threshold"], float(request["frame_interval"])
        theirs_by_time = golden_frames(response["body"]["result"]["json_result"], interval)
        samples = video.iter_samples(shared / request["path"], interval, vr=request["vr_video"])
        try:
            for sample in samples:
                ours = scorer.probabilities(sample.frame)
                theirs = theirs_by_time.get(round(sample.time_s, 6), {})
                tally.items += 1
                tally.same_tags += {t for t, p in ours.items() if p > threshold} == set(theirs)
                tally.same_within_tolerance += same_up_to_tolerance(ours, set(theirs), threshold)
                for tag, confidence in theirs.items():
                    tally.differences.append(abs(ours[tag] - confidence))
                    tally.signed.append(ours[tag] - confidence)
        finally:
            samples.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--normalization", type=int, choices=sorted(NORMALIZATIONS), default=None)
    args = parser.parse_args()
    shared = Path(os.environ.get("STASH_VISION_SHARED_DIR", "/work/shared"))
    golden = shared / "testdata" / "golden"
    with tempfile.TemporaryDirectory(prefix="skier233-agreement-") as tmp:
        data = Path(tmp)
        entry = import_skier233(
            shared / "models" / "skier233-standin" / f"{MODEL}.yaml",
            data / "model_repository",
            data / "models",
        )
        contract = entry.input
        if args.normalization is not None:
            mean, std = NORMALIZATIONS[args.normalization]
            contract = contract.model_copy(update={"mean": mean, "std": std})
        scorer = Scorer(entry, entry.weights_path(data / "models"), contract)
        print(f"contract mean {contract.mean} std {contract.std}")
        image_tally, video_tally = Tally(), Tally()
        images(shared, golden, scorer, image_tally)
        videos(shared, golden, scorer, video_tally)
    print(image_tally.line("images (golden image requests)"))
    print(video_tally.line("video frames (golden video requests)"))


if __name__ == "__main__":
    main()
