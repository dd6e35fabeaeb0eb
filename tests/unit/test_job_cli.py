"""Unit tests of `stash-vision jobs ...` (stash_vision/cli_jobs.py) through `cli.main`, against a
real grpc.aio server running JobServicer over the fake `Jobs` of tests/fake_jobs.py in a
background thread (the CLI runs its own asyncio loop, as it does for a person): the params a submit
builds, list/show/results output, follow exit codes, the API key, a server that is not running."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from stash_vision import cli
from stash_vision.cli_jobs_progress import ProgressView
from stash_vision.server.errors import InvalidInput
from stash_vision.server.jobs.api import JobUpdate
from stash_vision.server.jobs.model import ItemRecord, ItemState, JobState
from tests.fake_jobs import FakeJobs, MetadataRecorder, Step, job_server, progress


class Served:
    def __init__(self, fake: FakeJobs, recorder: MetadataRecorder) -> None:
        self.fake = fake
        self.recorder = recorder


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """JobServicer(FakeJobs) on its own loop in a thread; STASH_VISION_SERVER_URL points at it."""
    fake, recorder = FakeJobs(), MetadataRecorder()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    started: asyncio.Future[int] = loop.create_future()
    stop = asyncio.Event()

    async def serve() -> None:
        async with job_server(fake, recorder) as port:
            started.set_result(port)
            await stop.wait()

    running = asyncio.run_coroutine_threadsafe(serve(), loop)
    port = asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(started), 10), loop).result(15)
    monkeypatch.setenv("STASH_VISION_SERVER_URL", f"127.0.0.1:{port}")
    monkeypatch.delenv("STASH_VISION_API_KEY", raising=False)
    try:
        yield Served(fake, recorder)
    finally:
        loop.call_soon_threadsafe(stop.set)
        running.result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
        loop.close()


def jobs(*argv: str) -> int:
    return cli.main(["jobs", *argv])


def test_submit_builds_params_from_the_options(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = jobs(
        "submit",
        "tag-library",
        "/media/scenes",
        "relative/dir",
        "--path",
        "/media/one.mp4",
        "--path",
        "/media/two.mp4",
        "--include",
        "*.mp4",
        "--exclude",
        "*.part",
        "--modified-since",
        "2024-05-01T00:00:00+00:00",
        "--write-sidecars",
        "--frame-interval",
        "2.5",
        "--param",
        "profile=default",
        "--param",
        'models={"tagger": ["a", "b"]}',
        "--param",
        "limit=10",
    )
    assert code == 0
    assert capsys.readouterr().out == "job job-1 (tag-library): queued\n"
    assert served.fake.calls == [
        (
            "submit",
            (
                "tag-library",
                {
                    "roots": ["/media/scenes", str(tmp_path / "relative" / "dir")],
                    "paths": ["/media/one.mp4", "/media/two.mp4"],
                    "include": ["*.mp4"],
                    "exclude": ["*.part"],
                    "modified_since": int(datetime(2024, 5, 1, tzinfo=UTC).timestamp()),
                    "write_sidecars": True,
                    "frame_interval": 2.5,
                    "profile": "default",
                    "models": {"tagger": ["a", "b"]},
                    "limit": 10,
                },
            ),
        )
    ]


def test_build_face_index_takes_its_folder_positionally(served: Served) -> None:
    assert jobs("submit", "build-face-index", "/srv/performers") == 0
    assert served.fake.calls[0][1] == ("build-face-index", {"folder": "/srv/performers"})


def test_submit_takes_epoch_seconds_and_refuses_a_bad_date(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert jobs("submit", "identify-library", "--modified-since", "1714521600.5") == 0
    assert served.fake.calls[0][1][1] == {"modified_since": 1714521600.5}
    with pytest.raises(SystemExit) as exited:
        jobs("submit", "identify-library", "--modified-since", "last tuesday")
    assert exited.value.code == 2
    assert "'last tuesday' is neither an ISO date/time" in capsys.readouterr().err


def test_a_refused_submit_prints_the_servers_reason(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert jobs("submit", "paint-library", "/media") == 1
    assert capsys.readouterr().err.startswith("error: unknown job kind 'paint-library'")
    served.fake.fail_with = InvalidInput("root /media does not exist")
    assert jobs("submit", "tag-library", "/media") == 1
    assert capsys.readouterr().err == "error: root /media does not exist\n"


def test_list_prints_a_table_filtered_by_state_and_kind(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert jobs("list") == 0
    assert capsys.readouterr().out == "no jobs\n"
    fake = served.fake
    fake.add(
        "tag-library", JobState.RUNNING, progress=progress(370, 1000, failed=3, rate=12.3), message="a.mp4"
    )
    fake.add("identify-library", JobState.FAILED, error="index missing")
    assert jobs("list", "--state", "RUNNING", "--state", "failed", "--kind", "tag-library") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "kind", "state", "progress", "created", "message"]
    assert lines[1].startswith("job-1  tag-library  running  370/1000+ files, 3 failed, 12.3/s  ")
    assert lines[1].endswith("a.mp4") and len(lines) == 2
    assert fake.calls[-1] == ("list", ([JobState.RUNNING, JobState.FAILED], ["tag-library"], 50, ""))
    with pytest.raises(SystemExit):
        jobs("list", "--state", "sleeping")


def test_show_prints_the_job_its_error_counts_and_last_events(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = served.fake
    job_id = fake.add(
        "tag-library",
        JobState.SUCCEEDED,
        progress=progress(10, 10, failed=3, listing_complete=True),
        summary={"errors_by_kind": {"DecodeError": 1, "MediaNotFound": 2}, "tagged": 7},
    ).id
    for n in range(12):
        fake.log(job_id, f"event {n}", "warning" if n == 11 else "info")
    assert jobs("show", job_id) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"job {job_id} (tag-library): succeeded\n")
    assert '  params:    {"roots": ["/media"]}\n' in out
    assert "  progress:  10/10 files (100%), 3 failed\n" in out
    assert "  errors:    MediaNotFound 2, DecodeError 1\n" in out
    assert '  summary:   {"tagged": 7}\n' in out
    events = out.split("last events:\n")[1].splitlines()
    assert len(events) == 10 and events[0].endswith("info    event 2")
    assert events[-1].endswith("warning event 11")
    # The server unsubscribes in its own thread once the CLI's stream closes: give it a moment.
    deadline = time.monotonic() + 5
    while fake.subscribers[job_id] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.subscribers[job_id] == []
    assert jobs("show", "nope") == 1
    assert capsys.readouterr().err == "error: no job 'nope'\n"


@pytest.mark.parametrize(
    ("action", "state", "code", "out"),
    [
        ("pause", JobState.RUNNING, 0, "job job-1 (tag-library): paused\n"),
        ("resume", JobState.PAUSED, 0, "job job-1 (tag-library): queued\n"),
        ("cancel", JobState.QUEUED, 0, "job job-1 (tag-library): cancelled\n"),
        ("cancel", JobState.SUCCEEDED, 1, ""),
    ],
)
def test_actions(
    served: Served, capsys: pytest.CaptureFixture[str], action: str, state: JobState, code: int, out: str
) -> None:
    served.fake.add(state=state)
    assert jobs(action, "job-1") == code
    captured = capsys.readouterr()
    assert captured.out == out
    if code:
        assert captured.err == f"error: cannot {action} job job-1: it is {state}\n"


def test_results_all_pages_failed_only_and_json(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    fake = served.fake
    job_id = fake.add().id
    fake.items[job_id] = [
        ItemRecord(job_id, seq, f"/media/{seq}.mp4", ItemState.DONE, result={"n": seq})
        for seq in range(1, 151)
    ]
    fake.items[job_id][1] = ItemRecord(job_id, 2, "/media/2.mp4", ItemState.FAILED, "gone", "MediaNotFound")
    assert jobs("results", job_id) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 150
    assert lines[0].split() == ["1", "done", "/media/1.mp4"]
    assert lines[1] == "      2  failed  /media/2.mp4  MediaNotFound: gone"
    assert jobs("results", job_id, "--failed", "--json") == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [
        {
            "job_id": job_id,
            "seq": 2,
            "item": "/media/2.mp4",
            "state": "failed",
            "error": "gone",
            "error_kind": "MediaNotFound",
            "result": None,
            "result_key": "",
            "finished_at": None,
        }
    ]


@pytest.mark.parametrize(
    ("final", "code"),
    [(JobState.SUCCEEDED, 0), (JobState.FAILED, 1), (JobState.CANCELLED, 1), (JobState.PAUSED, 3)],
)
def test_follow_exits_by_the_final_state(
    served: Served, capsys: pytest.CaptureFixture[str], final: JobState, code: int
) -> None:
    served.fake.scripts["job-1"] = [
        Step({"state": JobState.RUNNING, "progress": progress(1, 2)}, ("started",)),
        Step({"progress": progress(2, 2, listing_complete=True)}),
        Step(
            {"state": final, "started_at": 100.0, "finished_at": 165.0, "error": "boom" if code == 1 else ""},
            ("the end",),
        ),
    ]
    assert jobs("submit", "tag-library", "/media", "--follow") == code
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "job job-1 (tag-library): queued"
    # Not a terminal: plain lines (state changes always, progress at most every 10 s), events too.
    assert lines[1] == "queued  0/0+ items"
    assert lines[2].endswith("info    started") and lines[3] == "running  1/2+ files"
    assert lines[4].endswith("info    the end") and lines[5].startswith(f"{final}  2/2 files (100%)")
    assert lines[6] == f"job job-1 {final}: 2/2 files (100%) in 1m05s"
    assert "\r" not in "".join(lines)


def test_watch_an_existing_job(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    served.fake.add(state=JobState.SUCCEEDED)
    assert jobs("watch", "job-1") == 0
    assert jobs("watch", "nope") == 1
    assert capsys.readouterr().err == "error: no job 'nope'\n"


def test_the_api_key_goes_with_every_call(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STASH_VISION_API_KEY", "sesame")
    served.fake.add(state=JobState.SUCCEEDED)
    assert jobs("show", "job-1") == 0  # GetJob and WatchJob
    assert served.recorder.api_keys == ["sesame", "sesame"]


def test_a_server_that_is_not_running_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def closed_port() -> int:
        server = grpc.aio.server()
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await server.stop(None)
        return port

    port = asyncio.run(closed_port())
    monkeypatch.setenv("STASH_VISION_SERVER_URL", f"127.0.0.1:{port}")
    for argv in (["list"], ["watch", "job-1"], ["submit", "tag-library", "/media", "--follow"]):
        assert jobs(*argv) == 1
        assert capsys.readouterr().err == (
            f"the server at 127.0.0.1:{port} is not running; start it with `stash-vision serve`\n"
        )


def test_a_terminal_gets_one_live_line() -> None:
    out, fake = io.StringIO(), FakeJobs()
    view = ProgressView(out, tty=True)
    job = fake.add(state=JobState.RUNNING, progress=progress(5, 10, listing_complete=True, eta_seconds=75))
    bar = "\r\x1b[K[############------------] running  5/10 files (50%), ETA 1m15s"
    view.update(JobUpdate(job))
    view.update(JobUpdate(job, [fake.log(job.id, "slow disk", "warning")]))
    view.close()
    # The event replaces the live line, which is drawn again below it; closing ends the line.
    first, event, second = out.getvalue().split("\r\x1b[K")[1:]
    assert "\r\x1b[K" + first == bar and event.endswith("  warning slow disk\n")
    assert "\r\x1b[K" + second == bar + "\n"
