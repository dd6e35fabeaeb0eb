"""The long Schemathesis run over the adapter (issue 17, Fuzzing; docs/fuzzing.md): the same world
and checks as tests/integration/test_fuzz_http.py (a real stack with a face index, a tagger and the
Stash stand-in on Stash's real schema), with many more examples per operation. Prints one line per
operation and a JSON summary; exits 1 when anything failed.

    python -m bench.fuzz_http --examples 200 [--only 'POST /identify']
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.fuzz_world import fuzz_world
from tests.integration.http_fuzzing import OperationReport, fuzz_adapter, summary


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=200, help="examples per operation")
    parser.add_argument("--only", action="append", default=[], help="an operation label, e.g. 'GET /jobs'")
    args = parser.parse_args()

    def progress(op: OperationReport) -> None:
        mark = "FAIL" if op.failures else "ok"
        print(f"{mark:4} {op.label:60} {op.requests:5} requests  statuses {op.statuses}", flush=True)
        for failure in op.failures:
            print(f"     {failure}", flush=True)

    with tempfile.TemporaryDirectory(prefix="fuzz-http-") as work, fuzz_world(Path(work)) as world:
        started = time.monotonic()
        report = fuzz_adapter(world.stack.http, max_examples=args.examples, progress=progress, only=args.only)
        figures = {**summary(report), "examples_per_operation": args.examples}
        figures["seconds"] = round(time.monotonic() - started)
        figures["server_alive"] = world.stack.process.poll() is None
    print(json.dumps(figures, indent=2))
    return 1 if report.failures or not figures["server_alive"] else 0


if __name__ == "__main__":
    sys.exit(main())
