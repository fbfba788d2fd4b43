"""Ingest benchmark: import a generated 20M-interaction CSV with the `table` reader, as `semrec data import` does.

Generates `user,item,timestamp,rating` rows (Amazon-style id strings, Zipf item popularity, skewed user activity)
into a temporary folder, then imports it in a child process per configuration so that the child's peak RSS is
the import's own: read + index (+ 5-core filtering) + save as Parquet. Writes one JSON per configuration under
benchmarks/results/ingest/ and regenerates benchmarks/RESULTS.md. Target: under 60 s and 4 GB on 2 cores.

    python benchmarks/ingest.py                      # 20M rows, configurations plain and kcore5
    python benchmarks/ingest.py --rows 1000000 --configs plain --no-record   # quick check
    python benchmarks/ingest.py --rows 100000000 --configs streamed          # 100M rows, streamed indexing
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

TARGET_WALL_S = 60.0
TARGET_RSS_MB = 4096.0
CONFIGS = {"plain": {"user_k": 0, "item_k": 0, "stream": False},
           "kcore5": {"user_k": 5, "item_k": 5, "stream": False},
           "streamed": {"user_k": 0, "item_k": 0, "stream": True}}  # chunk-by-chunk indexing (read_table stream)
ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)


def _ids(n: int, prefix: str, width: int, rng: np.random.Generator) -> pl.Series:
    """`n` distinct ids of `width` base-36 characters after `prefix`: random leading characters, then a 7-digit
    unique code (a permutation of 0..n-1 scrambled by an invertible map mod 36**7, so distinct for n <= 36**7)."""
    codes = rng.permutation(n).astype(np.int64) * 7919 % 36 ** 7
    digits = np.concatenate([rng.integers(0, 36, (n, width - 7)),
                             (codes[:, None] // 36 ** np.arange(6, -1, -1)) % 36], axis=1)
    body = np.ascontiguousarray(ALPHABET[digits]).view(f"S{width}").ravel()
    return prefix + pl.Series(body).cast(pl.Utf8)


def _zipf_sample(n_values: int, exponent: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` draws of ranks 0..n_values-1 with P(rank r) proportional to 1 / (r + 1) ** exponent."""
    cdf = np.cumsum(1.0 / np.arange(1, n_values + 1) ** exponent)
    return np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right").astype(np.int64)


def generate(path: Path, rows: int, seed: int = 0, item_exponent: float = 1.0,
             user_exponent: float = 0.5, chunk_rows: int = 20_000_000) -> dict[str, float]:
    """Write the synthetic CSV; ids are rank-shuffled so popular ids are not the small ones.

    Written `chunk_rows` at a time so 100M rows never sit in memory as strings; up to `chunk_rows` rows the
    draws (and the file) are those of a single chunk, i.e. the same as before chunking."""
    rng = np.random.default_rng(seed)
    n_users, n_items = rows // 20, rows // 40
    users = _ids(n_users, "A", 13, rng)  # like Amazon reviewerIDs (14 characters)
    items = _ids(n_items, "B0", 8, rng)  # like ASINs (10 characters)
    seen_users, seen_items = np.zeros(n_users, bool), np.zeros(n_items, bool)
    user_of_rank = item_of_rank = None
    with open(path, "wb") as f:
        for start in range(0, rows, chunk_rows):
            size = min(chunk_rows, rows - start)
            user_rank = _zipf_sample(n_users, user_exponent, size, rng)
            item_rank = _zipf_sample(n_items, item_exponent, size, rng)
            if user_of_rank is None:
                user_of_rank, item_of_rank = rng.permutation(n_users), rng.permutation(n_items)
            seen_users[user_rank] = True
            seen_items[item_rank] = True
            df = pl.DataFrame({
                "user": users.gather(user_of_rank[user_rank]),
                "item": items.gather(item_of_rank[item_rank]),
                "timestamp": rng.integers(1_388_534_400, 1_672_531_200, size),  # 2014-01-01 .. 2023-01-01
                "rating": rng.choice(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), size, p=[.06, .05, .09, .2, .6]),
            })
            df.write_csv(f, include_header=start == 0)
            del df
    return {"rows": rows, "n_user_ids": n_users, "n_item_ids": n_items, "seed": seed,
            "item_zipf_exponent": item_exponent, "user_zipf_exponent": user_exponent,
            "distinct_users": int(seen_users.sum()), "distinct_items": int(seen_items.sum()),
            "csv_bytes": path.stat().st_size, "generate_chunk_rows": chunk_rows}


def child(csv: Path, out: Path, config: str) -> dict[str, float]:
    """The measured import (runs in its own process): read + index, optional k-core, save."""
    from semrec.data import filter_dataset
    from semrec.data.readers import read_table

    k = CONFIGS[config]
    t0 = time.perf_counter()
    ds = read_table(csv, user_col="user", item_col="item", time_col="timestamp", rating_col="rating",
                    stream=k["stream"])
    t1 = time.perf_counter()
    if k["user_k"] or k["item_k"]:
        ds = filter_dataset(ds, user_k=k["user_k"], item_k=k["item_k"])
    t2 = time.perf_counter()
    ds.save(out)
    t3 = time.perf_counter()
    return {"read_s": t1 - t0, "filter_s": t2 - t1, "save_s": t3 - t2, "wall_s": t3 - t0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "users": ds.n_users, "items": ds.n_items, "interactions": ds.n_interactions}


def run_config(csv: Path, work: Path, config: str, gen: dict, record_results: bool) -> dict:
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", config, "--csv", str(csv),
                           "--out", str(work / f"ds_{config}")], capture_output=True, text=True)
    process_wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"import child failed:\n{proc.stderr}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(process_wall_s=process_wall, load_before=load_before, load_after=os.getloadavg())
    print(f"{config}: {res['wall_s']:.1f} s (read {res['read_s']:.1f}, filter {res['filter_s']:.1f}, save "
          f"{res['save_s']:.1f}), peak {res['peak_rss_mb']:.0f} MB, {res['interactions']:,} interactions, "
          f"load {load_before[0]:.1f} -> {res['load_after'][0]:.1f}")
    if record_results:
        from common import record

        extra = {"interactions": res["interactions"], "users": res["users"], "items": res["items"],
                 "rows_in_csv": gen["rows"], "csv_mb": round(gen["csv_bytes"] / 2**20, 1),
                 "process_wall_s": round(process_wall, 2), "loadavg_before": list(load_before),
                 "loadavg_after": list(res["load_after"]), "target_wall_s": TARGET_WALL_S,
                 "target_rss_mb": TARGET_RSS_MB,
                 "meets_target": res["wall_s"] < TARGET_WALL_S and res["peak_rss_mb"] < TARGET_RSS_MB}
        path = record("ingest", dataset=f"synthetic-csv-{gen['rows'] // 1_000_000}m", model="table-reader",
                      variant=config, timing={k: round(res[k], 2) for k in ("wall_s", "read_s", "filter_s",
                                                                           "save_s")},
                      settings={**gen, **CONFIGS[config], "reader": "table", "measured": "read_table + "
                                "filter_dataset + Dataset.save in a child process (peak RSS of that process)"},
                      extra=extra)
        # record() takes peak RSS from this process and its children; the child's own figure is the import's.
        rec = json.loads(path.read_text())
        rec["memory"]["peak_rss_mb"] = round(res["peak_rss_mb"], 1)
        path.write_text(json.dumps(rec, indent=2, default=str) + "\n")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--configs", default="plain,kcore5", help="comma-separated: " + ", ".join(CONFIGS))
    ap.add_argument("--workdir", type=Path, default=None, help="temp folder for the CSV (default: system temp)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-record", action="store_true", help="print only; write no results")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--csv", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.csv, args.out, args.child)))
        return
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")
    work = Path(tempfile.mkdtemp(prefix="semrec-ingest-", dir=args.workdir))
    try:
        t = time.perf_counter()
        gen = generate(work / "interactions.csv", args.rows, seed=args.seed)
        gen["generate_s"] = round(time.perf_counter() - t, 1)
        print(f"generated {gen['rows']:,} rows ({gen['csv_bytes'] / 2**20:.0f} MB) in {gen['generate_s']} s")
        for config in configs:
            run_config(work / "interactions.csv", work, config, gen, not args.no_record)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.no_record:
        from common import write_results_md

        print(f"wrote {write_results_md()}")


if __name__ == "__main__":
    main()
