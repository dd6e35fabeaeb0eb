"""Video tagging end to end: the plugin's /process_video/ against the real stack with the imported
stand-in model (conformance with the original server's golden answers) and with a synthetic
brightness tagger on a generated video (spans known in advance); progress streaming, re-use of
stored results, partial files and bad input."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import grpc
import httpx
import numpy as np
import pytest

from stash_vision.catalog.importers import import_skier233
from stash_vision.server.tagging.aitagger_format.categories import load_category_csv
from stash_vision.v1 import video_tagging_pb2, video_tagging_pb2_grpc
from tests.conftest import shared_dir, shared_file
from tests.golden import compare_frames, compare_video_tag_info, near_threshold_frames
from tests.integration.grpc_helpers import channel
from tests.stack import Stack, start_stack
from tests.synthetic_models import install_brightness_tagger

pytestmark = pytest.mark.integration

# Bright 0-9.9 s, dark 10-19.9 s, bright 20-29.9 s.
PATTERN = [(0.0, 10.0, 255), (10.0, 20.0, 0), (20.0, 30.0, 255)]
ROWS = [
    "Bright,Bright_AI,4,6,5s,0.5",
    "Dark,Dark_AI,4,6,50%,0.5",
    "Always,Always_AI,-1,6,1,0.5",
    "Never,Never_AI,4,6,1,0.5",
    "Coin,Coin_AI,4,6,1,0.6",
]


@pytest.fixture(scope="module")
def video_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("video")
    data = workdir / "data"
    import_skier233(
        shared_file("models/skier233-standin/vivid_galaxy_standin.yaml"),
        data / "model_repository",
        data / "models",
    )
    install_brightness_tagger(data, csv_rows=ROWS)
    stack = start_stack(workdir, shared_dir() / "models", models=["vivid_galaxy_standin", "synthetic_tagger"])
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def pattern_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 s, 10 fps, 96x64 H.264 whose brightness follows PATTERN."""
    path = tmp_path_factory.mktemp("generated") / "pattern.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.time_base = Fraction(1, 10)
        for index in range(300):
            seconds = index / 10
            value = next(v for start, end, v in PATTERN if start <= seconds < end)
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), value, np.uint8), format="bgr24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def fresh_copy(video: Path, folder: Path) -> Path:
    """The same video at a path the result store has no answer for."""
    return Path(shutil.copy(video, folder / video.name))


def post(stack: Stack, route: str, body: dict[str, Any], timeout: float = 600) -> httpx.Response:
    return httpx.post(f"{stack.http}{route}", json=body, timeout=timeout)


def request(video: Path | str, **overrides: Any) -> dict[str, Any]:
    body = {
        "path": str(video),
        "frame_interval": 2,
        "threshold": 0.3,
        "return_confidence": True,
        "vr_video": False,
        "existing_json_data": None,
        "categories_to_skip": ["actions"],
    }
    return {**body, **overrides}


def test_synthetic_spans_scene_tags_and_ai_json_are_exact(video_stack: Stack, pattern_video: Path) -> None:
    response = post(video_stack, "/process_video/", request(pattern_video))
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    info = result["video_tag_info"]
    assert info["video_duration"] == pytest.approx(30.0, abs=0.15)
    # Samples at 0, 2, ... 28 s: bright 0-8, dark 10-18, bright 20-28.
    spans = info["tag_timespans"]["synthetic"]
    assert spans["Bright_AI"] == [
        {"start": 0.0, "end": 8.0, "totalConfidence": pytest.approx(10.0, abs=0.01)},
        {"start": 20.0, "end": 28.0, "totalConfidence": pytest.approx(10.0, abs=0.01)},
    ]
    assert spans["Dark_AI"] == [
        {"start": 10.0, "end": 18.0, "totalConfidence": pytest.approx(10.0, abs=0.01)}
    ]
    assert "Always_AI" not in spans, "MinMarkerDuration -1: no markers"
    assert "Never_AI" not in spans, "a tag that never ran has no entry (as the original)"
    assert spans["Coin_AI"] == [], "runs below the CSV TagThreshold give no markers"
    # Bright totals 20 s >= 5 s; Dark 10 s < 50 % of 30 s; Always 30 s >= 1 s.
    assert set(info["video_tags"]["synthetic"]) == {"Bright_AI", "Always_AI"}
    assert (
        info["tag_totals"]["synthetic"]["Bright"] == 20.0 and info["tag_totals"]["synthetic"]["Dark"] == 10.0
    )
    stored = json.loads(result["json_result"])
    assert stored["schema_version"] == 1
    assert stored["metadata"]["models"]["synthetic"]["file_name"] == "synthetic_tagger"
    assert "actions" not in stored["timespans"], "skipped category"
    # Consecutive frames with the same confidence form one raw run (§3.6.1).
    assert stored["timespans"]["synthetic"]["Dark"] == [{"start": 10.0, "end": 18.0, "confidence": 1.0}]
    assert stored["metadata"]["models"]["synthetic"]["threshold"] == 0.3


def stage_counts(stack: Stack) -> dict[str, float]:
    """stash_vision_stage_seconds_count per stage, from the gRPC server's Prometheus endpoint."""
    text = httpx.get(f"http://127.0.0.1:{stack.server_metrics_port}/metrics", timeout=30).text
    counts = {"decode": 0.0, "preprocess": 0.0, "triton": 0.0}
    for stage in counts:
        match = re.search(rf'^stash_vision_stage_seconds_count{{stage="{stage}"}} (\S+)$', text, re.MULTILINE)
        counts[stage] = float(match.group(1)) if match else 0.0
    return counts


def test_the_video_path_records_decode_preprocess_and_triton_stages(
    video_stack: Stack, pattern_video: Path, tmp_path: Path
) -> None:
    # A fresh copy: the pattern video's answer is in the result store already (docs/jobs.md).
    before = stage_counts(video_stack)
    response = post(video_stack, "/process_video/", request(fresh_copy(pattern_video, tmp_path)))
    assert response.status_code == 200, response.text
    after = stage_counts(video_stack)
    # 15 samples (every 2 s of 30 s), each decoded and preprocessed once, and sent to the one tagger
    # that runs (the stand-in's only category is skipped).
    assert {stage: after[stage] - before[stage] for stage in after} == {
        "decode": 15,
        "preprocess": 15,
        "triton": 15,
    }


def test_return_confidence_false_still_gives_markers(video_stack: Stack, pattern_video: Path) -> None:
    info = post(video_stack, "/process_video/", request(pattern_video, return_confidence=False)).json()[
        "result"
    ]["video_tag_info"]
    assert [(s["start"], s["end"]) for s in info["tag_timespans"]["synthetic"]["Bright_AI"]] == [
        (0.0, 8.0),
        (20.0, 28.0),
    ]


def test_stored_results_are_reused_without_decoding(video_stack: Stack, pattern_video: Path) -> None:
    first = post(video_stack, "/process_video/", request(pattern_video)).json()["result"]
    stored = json.loads(first["json_result"])
    started = time.perf_counter()
    again = post(video_stack, "/process_video/", request(pattern_video, existing_json_data=stored)).json()[
        "result"
    ]
    assert again["json_result"] is None, "nothing re-run and already schema 1: the plugin keeps its file"
    assert again["video_tag_info"] == first["video_tag_info"]
    assert time.perf_counter() - started < 2.0
    # A finer threshold than stored forces a re-run of that category (§3.7).
    rerun = post(
        video_stack, "/process_video/", request(pattern_video, existing_json_data=stored, threshold=0.2)
    ).json()
    assert rerun["result"]["json_result"] is not None


def test_golden_answers_of_the_original_server(video_stack: Stack) -> None:
    """Every golden video answer the original gave with HTTP 200, per sampled frame (tags and
    confidences) and per scene (tags, totals, marker spans), within tests/golden.py's tolerances."""
    names = sorted(
        path.name.removesuffix(".response.json")
        for path in (shared_dir() / "testdata" / "golden").glob("process_video*.response.json")
        if json.loads(path.read_text())["http_status"] == 200
    )
    assert names == ["process_video_Megamind", "process_video_vtest_DECORD_BACKEND"]
    thresholds = {
        tag.original_tag: tag.tag_threshold
        for tag in load_category_csv(
            shared_file("models/skier233-standin/categories/actions.csv")
        ).tags.values()
    }
    problems: list[str] = []
    differences: list[float] = []
    for name in names:
        body = json.loads(shared_file(f"testdata/golden/{name}.request.json").read_text())
        golden = json.loads(shared_file(f"testdata/golden/{name}.response.json").read_text())["body"][
            "result"
        ]
        body["path"] = str(shared_dir() / body["path"])
        body["categories_to_skip"] = ["synthetic"]
        response = post(video_stack, "/process_video/", body)
        assert response.status_code == 200, f"{name}: {response.text}"
        ours = response.json()["result"]
        interval = float(body["frame_interval"])
        frame_problems, frame_differences = compare_frames(
            ours["json_result"], golden["json_result"], body["threshold"], interval
        )
        near = near_threshold_frames(golden["json_result"], interval, thresholds)
        scene_problems = compare_video_tag_info(
            ours["video_tag_info"], golden["video_tag_info"], interval, near
        )
        problems += [f"{name}: {problem}" for problem in frame_problems + scene_problems]
        differences += frame_differences
        print(
            f"\n{name}: {len(frame_differences)} (frame, tag) confidences, |difference| mean "
            f"{sum(frame_differences) / len(frame_differences):.4f}, max {max(frame_differences):.4f}"
        )
    assert not problems, "\n".join(problems)
    assert len(differences) >= 150, "the golden videos report a confidence for most sampled frames"


def test_vtest_succeeds_where_the_original_failed(video_stack: Stack) -> None:
    body = json.loads(shared_file("testdata/golden/process_video_vtest.request.json").read_text())
    golden = json.loads(shared_file("testdata/golden/process_video_vtest.response.json").read_text())
    assert golden["http_status"] == 400
    body["path"] = str(shared_dir() / body["path"])
    response = post(video_stack, "/process_video/", {**body, "categories_to_skip": ["synthetic"]})
    assert response.status_code == 200
    assert response.json()["result"]["video_tag_info"]["video_duration"] == pytest.approx(79.5, abs=0.1)


def test_partly_corrupt_file_gives_a_partial_result_that_says_so(video_stack: Stack) -> None:
    response = post(
        video_stack, "/process_video/", request(shared_file("testdata/video/tree.avi"), frame_interval=1)
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["partial"] is True
    assert result["partial_reason"]
    assert result["json_result"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"path": "/no/such/video.mp4"}, 404, "file not found"),
        ({"frame_interval": 0}, 422, ""),
        ({"frame_interval": -2}, 422, ""),
        ({"frame_interval": None}, 422, ""),
        ({"threshold": None}, 422, ""),
        ({"existing_json_data": {"schema_version": 99}}, 400, "schema"),
        ({"existing_json_data": "garbage"}, 400, "existing_json_data"),
    ],
)
def test_bad_requests_are_clear_4xx(
    video_stack: Stack, pattern_video: Path, body: dict[str, Any], status: int, fragment: str
) -> None:
    response = post(video_stack, "/process_video/", request(pattern_video, **body))
    assert response.status_code == status, response.text
    assert fragment in json.dumps(response.json()["detail"])


def test_not_a_video_and_an_empty_file(video_stack: Stack, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in (text, empty):
        response = post(video_stack, "/process_video/", request(path))
        assert response.status_code == 400, response.text
        assert response.json()["detail"]


def test_an_interval_longer_than_the_video_gives_one_sample(
    video_stack: Stack, pattern_video: Path, tmp_path: Path
) -> None:
    # A fresh copy: the stored answer at 2 s would serve 100 s too (a finer interval covers it, §3.7).
    response = post(
        video_stack, "/process_video/", request(fresh_copy(pattern_video, tmp_path), frame_interval=100)
    )
    assert response.status_code == 200, response.text
    stored = json.loads(response.json()["result"]["json_result"])
    assert stored["timespans"]["synthetic"]["Bright"] == [{"start": 0.0, "confidence": 1.0}]


def test_grpc_stream_reports_progress_then_the_result(video_stack: Stack) -> None:
    stub = video_tagging_pb2_grpc.VideoTaggingServiceStub(channel(video_stack.grpc_target))
    message = video_tagging_pb2.TagVideoRequest(
        path=str(shared_file("testdata/video/vtest.avi")),
        frame_interval=1,
        threshold=0.3,
        return_confidence=True,
        categories_to_skip=["synthetic"],
    )
    events = list(stub.TagVideo(message, timeout=600))
    progress = [e.progress for e in events if e.HasField("progress")]
    assert progress and progress[-1].frames_done == progress[-1].frames_total == 80
    assert events[-1].HasField("result") and sum(e.HasField("result") for e in events) == 1
    assert events[-1].result.metrics.frames_preprocessed == 80


def test_cancelling_the_call_stops_the_work(video_stack: Stack) -> None:
    stub = video_tagging_pb2_grpc.VideoTaggingServiceStub(channel(video_stack.grpc_target))
    message = video_tagging_pb2.TagVideoRequest(
        path=str(shared_file("testdata/video/vtest.avi")),
        frame_interval=0.1,
        threshold=0.3,
        categories_to_skip=["synthetic"],
    )
    call = stub.TagVideo(message, timeout=600)
    next(call)  # the first progress event: work has started
    call.cancel()
    with pytest.raises(grpc.RpcError) as cancelled:
        list(call)
    assert cancelled.value.code() == grpc.StatusCode.CANCELLED
    # The server is free again at once: a short request is answered promptly.
    started = time.perf_counter()
    response = post(
        video_stack,
        "/process_video/",
        request(shared_file("testdata/video/cup.mp4"), categories_to_skip=["synthetic"]),
    )
    assert response.status_code == 200
    assert time.perf_counter() - started < 60


def test_ten_concurrent_videos_all_finish(video_stack: Stack, pattern_video: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    files = [pattern_video, shared_file("testdata/video/cup.mp4"), shared_file("testdata/video/box.mp4")]
    with ThreadPoolExecutor(10) as pool:
        responses = list(
            pool.map(lambda i: post(video_stack, "/process_video/", request(files[i % 3])), range(10))
        )
    assert [r.status_code for r in responses] == [200] * 10


def test_v3_route_gives_schema_3_runs_with_model_names(video_stack: Stack, pattern_video: Path) -> None:
    response = post(video_stack, "/v3/process_video/", request(pattern_video, threshold=0.5))
    assert response.status_code == 200, response.text
    body = response.json()
    result = body["result"]
    assert result["schema_version"] == 3
    assert result["frame_interval"] == 2.0
    assert [m["name"] for m in result["models"]] == ["synthetic_tagger"], (
        "fully skipped models are not listed"
    )
    # Model tag names, no confidences, runs merged across gaps up to 4 s.
    assert result["timespans"]["synthetic"]["Bright"] == [
        {"start": 0.0, "end": 8.0, "confidence": None},
        {"start": 20.0, "end": 28.0, "confidence": None},
    ]
    assert body["metrics"]["frames_preprocessed"] == 15
