"""Voyager HNSW parameters for the face index: build time, file size, single-query latency and
recall against exact search, on synthetic face-like vectors.

Data (make_faces): a performer is a point of a 32-dimensional identity space mapped into d
dimensions, plus a small residual and a shared mean direction (real embeddings sit in a cone:
unrelated faces have cos ~0.1); a face is its performer's centre moved along 16 shared nuisance
directions (pose, light, expression) plus a small residual, renormalised: two faces of one
performer have cos ~0.67. 1 to 20 faces per performer (3 on average, like Stash Sense's ~277k faces
of ~93k performers). Queries are new faces of indexed performers, i.e. what a request asks.
Isotropic Gaussian vectors would be far harder than faces and say little; how hard real
embeddings are for HNSW depends on their intrinsic dimension, which --latent-dim varies.

Per dimension (512, 128) and M (12, 16, 24), ef_construction 200, Cosine, Float32:

1. build an index of the first `--sizes[0]` faces (add_items, all cores) and time it; save it to
   a temporary file for its size;
2. ground truth: exact top-k by numpy matmul of the normalised vectors;
3. for each query_ef: `--queries` single queries, one at a time (k=10, one (1, d) vector per call,
   as a request for one face does), timed one by one -> p50/p99 latency, and recall@10;
   likewise k=100 (what identification asks Voyager for, Stash Sense's query_k) at query_ef 100, 200.

Then, for the M chosen at the first size, the same index is extended to each further size (HNSW
insertion is incremental: building 100k then adding 200k gives a 300k index like a one-go build)
and measured again. The chosen defaults: the (M, query_ef) with recall@10 >= 0.95 and p99 < 5 ms
at the first size and the lowest p50, in the first dimension listed (512: both models of the
Stash Sense profile).

    .venv/bin/python -m bench.bench_voyager            # 100k + 300k, about 14 minutes on 2 cores
    .venv/bin/python -m bench.bench_voyager --quick    # 20k + 60k, about 1.5 minutes

The table is printed and written as JSON to bench/results/voyager-<UTC timestamp>.json. Method and
figures: docs/benchmarks-voyager.md."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import voyager

from bench.toolkit.procs import CpuWindow
from bench.toolkit.results import run_fields, write_result

# Targets for picking defaults (docs/benchmarks-voyager.md).
TARGET_RECALL = 0.95
TARGET_P99_MS = 5.0
K = 10
K_WIDE = 100
WIDE_EFS = (100, 200)
EF_CONSTRUCTION = 200
WARMUP_QUERIES = 100
# Synthetic faces (make_faces): identity latent dimensions (--latent-dim), shared nuisance
# directions, per-face nuisance scale, isotropic residual, weight of the shared mean direction.
LATENT_DIMS = 32
NUISANCE_DIMS = 16
NUISANCE = 0.7
RESIDUAL = 0.1
MEAN_WEIGHT = 0.45

Floats = npt.NDArray[np.float32]


# -- synthetic faces ------------------------------------------------------------------------------
@dataclass
class FaceSet:
    vectors: Floats  # (n, d), unit norm
    performer_of: npt.NDArray[np.int64]  # (n,)
    queries: Floats  # (q, d), unit norm: new faces of indexed performers
    query_performer: npt.NDArray[np.int64]
    same_cos: float  # mean cosine between two faces of one performer
    other_cos: float  # mean cosine between faces of different performers


def _normalise(x: Floats) -> Floats:
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def make_faces(n: int, dim: int, queries: int, query_pool: int, latent: int, seed: int) -> FaceSet:
    """n faces; `queries` new faces of the performers among the first `query_pool` rows.

    Identity: a `latent`-dimensional Gaussian mapped into `dim` by a random linear map, plus a small
    residual in all dimensions and a shared mean direction (real embeddings sit in a cone: unrelated
    faces have cos ~0.1). A face: its centre plus variation along NUISANCE_DIMS shared directions
    (pose, light, expression act alike on everyone) plus a small residual, renormalised. Two faces
    of one performer then have cos ~0.67, as FaceNet512/ArcFace give for two photos of one person."""
    rng = np.random.default_rng(seed)
    # Faces per performer: 1 + Poisson(2), at most 20 (Stash Sense's cap); about 3 on average.
    counts: list[int] = []
    while sum(counts) < n:
        counts.append(int(min(20, 1 + rng.poisson(2.0))))
    counts[-1] -= sum(counts) - n
    performers = len(counts)
    identity_map = rng.standard_normal((latent, dim)).astype(np.float32)
    nuisance_map = rng.standard_normal((NUISANCE_DIMS, dim)).astype(np.float32) / np.float32(
        np.sqrt(NUISANCE_DIMS * dim)
    )
    mean_direction = _normalise(rng.standard_normal((1, dim)).astype(np.float32))[0]

    def residual(rows: int) -> Floats:
        return rng.standard_normal((rows, dim)).astype(np.float32) * np.float32(RESIDUAL / np.sqrt(dim))

    centres = np.empty((performers, dim), dtype=np.float32)
    for start in range(0, performers, 50_000):
        rows = min(50_000, performers - start)
        identity = _normalise(
            rng.standard_normal((rows, latent)).astype(np.float32) @ identity_map
        ) + residual(rows)
        centres[start : start + rows] = _normalise(
            _normalise(identity) + np.float32(MEAN_WEIGHT) * mean_direction
        )
    performer_of = np.repeat(np.arange(performers, dtype=np.int64), counts)

    def noisy(ids: npt.NDArray[np.int64]) -> Floats:
        out = np.empty((len(ids), dim), dtype=np.float32)
        for start in range(0, len(ids), 50_000):
            chunk = ids[start : start + 50_000]
            nuisance = rng.standard_normal((len(chunk), NUISANCE_DIMS)).astype(np.float32) @ nuisance_map
            variation = np.float32(NUISANCE) * nuisance + residual(len(chunk))
            out[start : start + len(chunk)] = _normalise(centres[chunk] + variation)
        return out

    vectors = noisy(performer_of)
    query_performer = performer_of[rng.integers(0, query_pool, size=queries)]
    query_vectors = noisy(query_performer)

    # Realism check, reported with the results.
    multi = np.flatnonzero(np.bincount(performer_of) >= 2)[:2000]
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    same = np.einsum("ij,ij->i", vectors[starts[multi]], vectors[starts[multi] + 1])
    a, b = rng.integers(0, n, size=(2, 4000))
    differ = performer_of[a] != performer_of[b]
    other = np.einsum("ij,ij->i", vectors[a[differ]], vectors[b[differ]])
    return FaceSet(
        vectors, performer_of, query_vectors, query_performer, float(same.mean()), float(other.mean())
    )


def exact_top(vectors: Floats, queries: Floats, k: int) -> npt.NDArray[np.int64]:
    """Exact top-k rows by cosine (the vectors are unit norm), nearest first."""
    best_ids = np.empty((len(queries), 0), dtype=np.int64)
    best_sims = np.empty((len(queries), 0), dtype=np.float32)
    for start in range(0, len(vectors), 50_000):
        sims = queries @ vectors[start : start + 50_000].T
        take = min(k, sims.shape[1])
        part = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        best_ids = np.concatenate([best_ids, part + start], axis=1)
        best_sims = np.concatenate([best_sims, np.take_along_axis(sims, part, axis=1)], axis=1)
        keep = np.argsort(-best_sims, axis=1)[:, :k]
        best_ids = np.take_along_axis(best_ids, keep, axis=1)
        best_sims = np.take_along_axis(best_sims, keep, axis=1)
    return best_ids


# -- measurement ----------------------------------------------------------------------------------
@dataclass
class QueryRow:
    k: int
    query_ef: int
    recall: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    top1_same_performer: float
    # Of the exact top-k rows that are faces of the query's own performer, the share found: what
    # identification needs (the other rows are faces of other people at crowded distances).
    own_face_recall: float
    outside_cores: float


@dataclass
class IndexRow:
    dim: int
    size: int
    M: int
    ef_construction: int
    build_s: float
    build_outside_cores: float
    file_mb: float
    queries: list[QueryRow] = field(default_factory=list)


def measure_queries(
    index: Any, faces: FaceSet, truth: dict[int, npt.NDArray[np.int64]], efs: list[int]
) -> list[QueryRow]:
    rows: list[QueryRow] = []
    queries = faces.queries
    for k, ef_list in ((K, efs), (K_WIDE, list(WIDE_EFS))):
        for ef in ef_list:
            if ef < k:
                continue
            for i in range(min(WARMUP_QUERIES, len(queries))):
                index.query(queries[i : i + 1], k=k, num_threads=1, query_ef=ef)
            load = CpuWindow()
            latencies = np.empty(len(queries), dtype=np.float64)
            found = np.empty((len(queries), k), dtype=np.int64)
            for i in range(len(queries)):
                one = queries[i : i + 1]
                started = time.perf_counter_ns()
                ids, _ = index.query(one, k=k, num_threads=1, query_ef=ef)
                latencies[i] = (time.perf_counter_ns() - started) / 1e6
                found[i] = ids[0]
            expected = truth[k]
            recall = float(np.mean([len(set(found[i]) & set(expected[i])) / k for i in range(len(queries))]))
            top1 = float(np.mean(faces.performer_of[found[:, 0]] == faces.query_performer))
            own_found = own_total = 0
            for i in range(len(queries)):
                own = {int(r) for r in expected[i] if faces.performer_of[r] == faces.query_performer[i]}
                own_total += len(own)
                own_found += len(own & {int(r) for r in found[i]})
            rows.append(
                QueryRow(
                    k=k,
                    query_ef=ef,
                    recall=round(recall, 4),
                    p50_ms=round(float(np.percentile(latencies, 50)), 3),
                    p99_ms=round(float(np.percentile(latencies, 99)), 3),
                    mean_ms=round(float(latencies.mean()), 3),
                    top1_same_performer=round(top1, 4),
                    own_face_recall=round(own_found / max(own_total, 1), 4),
                    outside_cores=round(load.close().outside, 2),
                )
            )
            row = rows[-1]
            print(
                f"    k={k:<3} ef={ef:<4} recall={row.recall:.4f} p50={row.p50_ms:.3f} ms "
                f"p99={row.p99_ms:.3f} ms own-face recall={row.own_face_recall:.3f} "
                f"top1-performer={row.top1_same_performer:.3f} "
                f"(outside load {row.outside_cores:.2f} cores)",
                flush=True,
            )
    return rows


def file_mb(index: Any, folder: Path) -> float:
    path = folder / "index.voy"
    index.save(str(path))
    size = path.stat().st_size / 1e6
    path.unlink()
    return round(size, 1)


def passes(row: QueryRow) -> bool:
    return row.k == K and row.recall >= TARGET_RECALL and row.p99_ms < TARGET_P99_MS


def choose(rows: list[IndexRow], dim: int, size: int) -> tuple[int, int] | None:
    """(M, query_ef) with the lowest p50 among the passing configurations at this size and dim."""
    candidates = [
        (q.p50_ms, r.M, q.query_ef)
        for r in rows
        if r.dim == dim and r.size == size
        for q in r.queries
        if passes(q)
    ]
    if not candidates:
        return None
    _, m, ef = min(candidates)
    return m, ef


# -- driver ---------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = sorted(args.sizes)
    results: list[IndexRow] = []
    data_stats: dict[str, Any] = {}
    chosen: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="stash-vision-bench-voyager-") as tmp:
        folder = Path(tmp)
        for dim in args.dims:
            started = time.monotonic()
            faces = make_faces(sizes[-1], dim, args.queries, sizes[0], args.latent_dim, seed=args.seed + dim)
            performers = int(faces.performer_of.max()) + 1
            print(
                f"dim {dim}: {sizes[-1]} faces of {performers} performers generated in "
                f"{time.monotonic() - started:.0f} s; same-performer cos {faces.same_cos:.3f}, "
                f"different performers {faces.other_cos:.3f}",
                flush=True,
            )
            data_stats[str(dim)] = {
                "faces": sizes[-1],
                "performers": performers,
                "same_performer_cos": round(faces.same_cos, 3),
                "different_performer_cos": round(faces.other_cos, 3),
            }
            truth_by_size = {}
            for size in sizes:
                # Queries are faces of performers indexed at the smallest size, so they are valid at all.
                truth_by_size[size] = {
                    k: exact_top(faces.vectors[:size], faces.queries, k) for k in (K, K_WIDE)
                }
                # The identification ceiling: how often the exact nearest face is the query's performer.
                exact_top1 = faces.performer_of[truth_by_size[size][K][:, 0]] == faces.query_performer
                data_stats[str(dim)][f"exact_top1_same_performer_{size}"] = round(float(exact_top1.mean()), 4)
            first = sizes[0]
            indices: dict[int, Any] = {}
            for m in args.M:
                index = voyager.Index(
                    voyager.Space.Cosine,
                    num_dimensions=dim,
                    M=m,
                    ef_construction=args.ef_construction,
                    max_elements=first,
                    storage_data_type=voyager.StorageDataType.Float32,
                )
                load = CpuWindow()
                built = time.perf_counter()
                index.add_items(faces.vectors[:first], ids=list(range(first)), num_threads=-1)
                build_s = time.perf_counter() - built
                row = IndexRow(
                    dim,
                    first,
                    m,
                    args.ef_construction,
                    round(build_s, 1),
                    round(load.close().outside, 2),
                    file_mb(index, folder),
                )
                print(
                    f"  d={dim} n={first} M={m}: built in {row.build_s:.1f} s (outside load "
                    f"{row.build_outside_cores:.2f} cores), {row.file_mb:.0f} MB",
                    flush=True,
                )
                row.queries = measure_queries(index, faces, truth_by_size[first], args.ef)
                results.append(row)
                indices[m] = (index, build_s)
            pick = choose(results, dim, first)
            grow_m = pick[0] if pick else min(args.M)
            chosen[str(dim)] = {"M": pick[0], "query_ef": pick[1]} if pick else None
            print(
                f"  d={dim}: chosen at {first}: {chosen[str(dim)]}; growing M={grow_m} to {sizes[1:]}",
                flush=True,
            )
            index, total_build = indices[grow_m]
            for m in list(indices):
                if m != grow_m:
                    del indices[m]
            previous = first
            for size in sizes[1:]:
                load = CpuWindow()
                built = time.perf_counter()
                index.add_items(faces.vectors[previous:size], ids=list(range(previous, size)), num_threads=-1)
                total_build += time.perf_counter() - built
                row = IndexRow(
                    dim,
                    size,
                    grow_m,
                    args.ef_construction,
                    round(total_build, 1),
                    round(load.close().outside, 2),
                    file_mb(index, folder),
                )
                print(
                    f"  d={dim} n={size} M={grow_m}: built in {row.build_s:.1f} s in all, {row.file_mb:.0f} MB",
                    flush=True,
                )
                row.queries = measure_queries(index, faces, truth_by_size[size], args.ef)
                results.append(row)
                previous = size
            del index, indices, faces
    return {"indices": [asdict(r) for r in results], "data": data_stats, "chosen": chosen}


def print_table(indices: list[dict[str, Any]]) -> None:
    print()
    print(
        f"{'dim':>4} {'size':>7} {'M':>3} {'build s':>8} {'MB':>6} {'k':>4} {'ef':>4} {'recall':>7} {'p50 ms':>7} {'p99 ms':>7}"
    )
    for row in indices:
        for q in row["queries"]:
            flag = (
                " *" if q["k"] == K and q["recall"] >= TARGET_RECALL and q["p99_ms"] < TARGET_P99_MS else ""
            )
            print(
                f"{row['dim']:>4} {row['size']:>7} {row['M']:>3} {row['build_s']:>8.1f} {row['file_mb']:>6.0f} "
                f"{q['k']:>4} {q['query_ef']:>4} {q['recall']:>7.4f} {q['p50_ms']:>7.3f} {q['p99_ms']:>7.3f}{flag}"
            )
    print(f"(* recall@{K} >= {TARGET_RECALL} and p99 < {TARGET_P99_MS} ms)")


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_voyager", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="sizes 20000,60000 and 300 queries (about 1.5 minutes)"
    )
    parser.add_argument("--sizes", type=_ints, default=None, help="index sizes (default 100000,300000)")
    parser.add_argument("--dims", type=_ints, default=[512, 128], help="vector dimensions (default 512,128)")
    parser.add_argument("--M", type=_ints, default=[12, 16, 24], help="HNSW M values (default 12,16,24)")
    parser.add_argument("--ef-construction", type=int, default=EF_CONSTRUCTION)
    parser.add_argument("--ef", type=_ints, default=[20, 50, 100, 200, 400], help="query_ef values at k=10")
    parser.add_argument(
        "--queries", type=int, default=None, help="timed single queries per setting (default 1000)"
    )
    parser.add_argument(
        "--latent-dim",
        type=int,
        default=LATENT_DIMS,
        help="identity dimensions of the synthetic faces: higher is harder for HNSW (default 32)",
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [20_000, 60_000] if args.quick else [100_000, 300_000]
    if args.queries is None:
        args.queries = 300 if args.quick else 1000
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.monotonic()
    loadavg_at_start = os.getloadavg()
    measured = run(args)
    print_table(measured["indices"])
    result = {
        "settings": {
            "sizes": args.sizes,
            "dims": args.dims,
            "M": args.M,
            "ef_construction": args.ef_construction,
            "query_ef": args.ef,
            "queries": args.queries,
            "k": K,
            "k_wide": K_WIDE,
            "space": "cosine",
            "storage": "float32",
            "targets": {"recall_at_10": TARGET_RECALL, "p99_ms": TARGET_P99_MS},
            "synthetic_faces": {
                "latent_dims": args.latent_dim,
                "nuisance_dims": NUISANCE_DIMS,
                "nuisance": NUISANCE,
                "residual": RESIDUAL,
                "mean_weight": MEAN_WEIGHT,
            },
        },
        **measured,
        **run_fields(
            "bench.bench_voyager",
            argv,
            started,
            numpy=np.__version__,
            voyager=version("voyager"),
            loadavg_at_start=loadavg_at_start,
        ),
    }
    out = write_result("voyager-", result)
    print(f"chosen: {measured['chosen']}")
    print(f"wrote {out} ({result['wall_s']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
