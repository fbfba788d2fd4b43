"""Cost growth: time and peak memory of each stage as the catalogue grows 10k -> 100k -> 1M items (same users)
and the log grows 1M -> 10M -> 100M interactions, with the fitted log-log exponent of each.

Every measurement runs in a fresh child process (`--child STEP --size N`), so `memory.peak_rss_mb` is that
step's own peak (interpreter and imports included, the parent and data generators excluded where stated).
Steps (model names in the results):

- `ingest`: `read_table(stream=True)` + `Dataset.save` of a synthetic CSV (benchmarks/ingest.py generator;
  the CSV is written by the parent, not measured), sizes = interactions.
- `balanced-kmeans`: `kmeans(x, 256, balanced=True)` on n x 384 float32 vectors (the input is in the peak).
- `rq-kmeans`: `RQKMeans(3 levels x 256).fit` on n x 384, then `encode` of 10,000 new vectors.
- `sasrec-epoch`: one SASRec training epoch (published config, BCE loss) over 20,000 users' sequences.
- `evaluate`: full-ranking evaluation of that SASRec (untrained; cost does not depend on the weights) on the
  20,000 users, catalogue scored in chunks (`item_chunk`, the evaluator's default chunking when unset).
- `decoding`: TIGER (paper config, untrained) beam-20 trie-constrained decoding of 512 users.

After the children, `extra.exponent` (slope of log time and of log peak RSS against log size) is written into
every file of a series, `extra.growth_10k_to_1M` into the decoding files, and a log-log plot to
benchmarks/results/scale/scale.png.

    python benchmarks/scale.py --steps balanced-kmeans --sizes 10000 100000 1000000
    python benchmarks/scale.py --steps ingest --sizes 1000000 10000000 100000000
    python benchmarks/scale.py --fit-only     # exponents, plot and RESULTS.md from the files already there
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

OUT = ROOT / "results" / "scale"
ITEM_STEPS = ("balanced-kmeans", "rq-kmeans", "sasrec-epoch", "evaluate", "decoding")
STEPS = ("ingest", *ITEM_STEPS)
N_USERS, DIM, CODES, DECODE_USERS, ENCODE_NEW = 20_000, 384, 256, 512, 10_000
TARGETS = {"balanced-kmeans": "peak RSS <= 2048 MB at 1M x 384, 256 codes",
           "ingest": "peak RSS <= 8192 MB at 100M interactions",
           "decoding": "beam-20 time grows <= 2x from 10k to 1M items",
           "evaluate": "peak RSS flat in catalogue size (chunked scoring)"}


def label(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def vectors(n: int, seed: int = 0, dim: int = DIM, chunk: int = 8192) -> np.ndarray:
    """n x dim float32 item vectors from 1,000 Gaussian clusters, filled in chunks (no float64 temporary)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim), dtype=np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        out[s:s + m] = centres[rng.integers(0, 1000, m)]
        out[s:s + m] += 0.5 * rng.standard_normal((m, dim), dtype=np.float32)
    return out


def histories(n_items: int, seed: int = 0):
    """The same 20,000 users at every catalogue size: the same lengths (5..50) and the same Zipf popularity
    ranks, mapped onto a catalogue of `n_items` (ranks shuffled over the item indices)."""
    from semrec.data import Sequences

    rng = np.random.default_rng(seed)
    lengths = np.minimum(5 + rng.geometric(1 / 15, N_USERS), 50)
    u = rng.random(int(lengths.sum()))
    ranks = np.floor(np.expm1(u * np.log1p(n_items))).astype(np.int64)  # ~ 1/rank popularity over n_items
    items = np.random.default_rng(seed + 1).permutation(n_items)[np.minimum(ranks, n_items - 1)]
    return Sequences.from_lengths(lengths, items)


def _eval_set(seqs):
    from semrec.data import EvalSet, Sequences

    lengths = seqs.lengths
    ends = np.cumsum(lengths)
    hist = Sequences.from_lengths(lengths - 1, np.delete(seqs.items, ends - 1))
    return EvalSet(np.arange(len(lengths)), hist, Sequences.from_lengths(np.ones_like(lengths), seqs.items[ends - 1]))


def _vm(field: str) -> float | None:
    """VmRSS / VmHWM of this process in MB (Linux), None elsewhere."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:  # no /proc: not Linux
        return None
    return None


STEP: dict[str, float | None] = {}


def step_starts() -> None:
    """Mark the start of the measured section: RSS now, and reset the high-water mark (Linux clear_refs 5), so
    `extra.step_peak_rss_mb` is the section's own peak, apart from building its inputs (e.g. the model)."""
    STEP["rss_before_step_mb"] = _vm("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        STEP["rss_before_step_mb"] = None


def run_step(step: str, n: int, csv: Path | None) -> tuple[dict, dict, dict]:
    """(timing, settings, extra) of one measurement, in this (child) process."""
    import torch

    torch.set_num_threads(1)
    if step == "ingest":
        from semrec.data.readers import read_table

        step_starts()
        t0 = time.perf_counter()
        ds = read_table(csv, user_col="user", item_col="item", time_col="timestamp", rating_col="rating",
                        stream=True)
        t1 = time.perf_counter()
        out = Path(tempfile.mkdtemp(prefix="semrec-scale-", dir=csv.parent))
        ds.save(out / "ds")
        t2 = time.perf_counter()
        shutil.rmtree(out, ignore_errors=True)
        return ({"wall_s": round(t2 - t0, 2), "read_s": round(t1 - t0, 2), "save_s": round(t2 - t1, 2)},
                {"reader": "table", "stream": True, "csv": "benchmarks/ingest.py generate(rows, seed=0)",
                 "csv_mb": round(csv.stat().st_size / 2**20, 1)},
                {"n_interactions": ds.n_interactions, "n_items": ds.n_items, "n_users": ds.n_users})
    if step == "balanced-kmeans":
        from semrec.semantic_ids import kmeans

        x = torch.from_numpy(vectors(n))
        step_starts()
        t0 = time.perf_counter()
        _, a = kmeans(x, CODES, balanced=True)
        dt = time.perf_counter() - t0
        sizes = np.bincount(a.numpy(), minlength=CODES)
        return ({"wall_s": round(dt, 2)}, {"k": CODES, "dim": DIM, "balanced": True, "balance_slack": 0.0,
                                           "n_iter": 20, "max_points_per_centroid": 256, "dtype": "float32"},
                {"n_items": n, "max_code_size": int(sizes.max()), "min_code_size": int(sizes.min()),
                 "input_mb": round(x.numel() * 4 / 2**20, 1)})
    if step == "rq-kmeans":
        from semrec.semantic_ids import RQKMeans

        x = vectors(n)
        step_starts()
        t0 = time.perf_counter()
        tok = RQKMeans(n_levels=3, codebook_size=CODES).fit(x)
        t1 = time.perf_counter()
        new = vectors(ENCODE_NEW, seed=7)
        t2 = time.perf_counter()
        codes = tok.encode(new)
        t3 = time.perf_counter()
        return ({"wall_s": round(t3 - t0 - (t2 - t1), 2), "fit_s": round(t1 - t0, 2), "encode_s": round(t3 - t2, 3)},
                {"n_levels": 3, "codebook_size": CODES, "dim": DIM, "collisions": "append", "backend": "torch",
                 "encode_new_items": ENCODE_NEW},
                {"n_items": n, "code_levels": int(codes.shape[1]), "collision_rate_before":
                 tok.fit_stats.get("collision_rate_before"), "input_mb": round(x.nbytes / 2**20, 1)})
    from semrec.models.base import get_model_class

    seqs = histories(n)
    if step == "sasrec-epoch":
        model = get_model_class("sasrec")(n, epochs=1, progress=False, patience=0)
        step_starts()
        t0 = time.perf_counter()
        model.fit(seqs)
        dt = time.perf_counter() - t0
        cfg = model.config
        return ({"wall_s": round(dt, 2), "epoch_s": round(model.history.epoch_s, 2)},
                {"loss": cfg.loss, "hidden": cfg.hidden, "n_layers": cfg.n_layers, "max_len": cfg.max_len,
                 "batch_size": cfg.train.batch_size, "optimizer": cfg.train.optimizer, "users": N_USERS},
                {"n_items": n, "n_train_interactions": int(seqs.lengths.sum())})
    if step == "evaluate":
        from semrec.evaluation import evaluate

        model = get_model_class("sasrec")(n).build()
        evalset = _eval_set(seqs)
        step_starts()
        t0 = time.perf_counter()
        res = evaluate(model, evalset, batch_size=1024)
        dt = time.perf_counter() - t0
        params_mb = sum(p.numel() * p.element_size() for p in model.module.parameters()) / 2**20
        return ({"wall_s": round(dt, 2), "eval_s": round(dt, 2)},
                {"model": "sasrec (untrained, published config)", "batch_size": 1024, "item_chunk":
                 "default (batch x chunk <= 2^25 scores)", "exclude_history": False, "users": N_USERS},
                {"n_items": n, "model_params_mb": round(params_mb, 1),
                 "ndcg@10_untrained": round(float(res.metrics["ndcg@10"]), 5)})
    if step == "decoding":
        from semrec.generation import disambiguate

        rng = np.random.default_rng(0)
        codes = disambiguate(np.concatenate([rng.integers(0, 256, (n, 3)), np.zeros((n, 1), np.int64)], 1))
        model = get_model_class("tiger")(n, codes=codes).build()
        model.module.eval()
        hist = seqs.select(np.arange(DECODE_USERS))
        model.recommend(hist.select(np.arange(64)), k=10, beam=20)  # warm-up
        step_starts()
        t0 = time.perf_counter()
        items, _ = model.recommend(hist, k=10, beam=20)
        dt = time.perf_counter() - t0
        params_mb = sum(p.numel() * p.element_size() for p in model.module.parameters()) / 2**20
        invalid = int(((items < 0) | (items >= n)).sum())
        cfg = model.config
        return ({"wall_s": round(dt, 3)},
                {"arch": "tiger", "beam": 20, "k": 10, "users": DECODE_USERS, "n_levels": int(codes.shape[1]),
                 "codes": "random 3x256 + disambiguation level", "decode_batch": cfg.decode_batch,
                 "d_model": cfg.d_model, "encoder_input": "item" if model.item_input else "token"},
                {"n_items": n, "users_per_s": round(DECODE_USERS / dt, 1), "invalid_items": invalid,
                 "model_params_mb": round(params_mb, 1), "code_depth": int(codes.shape[1])})
    raise SystemExit(f"unknown step {step!r}; choose from {STEPS}")


def child(step: str, n: int, csv: Path | None) -> None:
    from common import record

    load0 = os.getloadavg()
    timing, settings, extra = run_step(step, n, csv)
    hwm = _vm("VmHWM") if STEP.get("rss_before_step_mb") is not None else None
    extra.update(rss_before_step_mb=STEP.get("rss_before_step_mb") and round(STEP["rss_before_step_mb"], 1),
                 step_peak_rss_mb=hwm and round(hwm, 1))
    extra.setdefault("n_items", None)
    extra.setdefault("n_interactions", int(histories_total(n)) if step in ITEM_STEPS[2:] else None)
    extra.update(world_size=1, threads=1, size=n, loadavg_before=[round(v, 2) for v in load0],
                 loadavg_after=[round(v, 2) for v in os.getloadavg()], target=TARGETS.get(step))
    path = record("scale", dataset="synthetic", model=step, variant=label(n), timing=timing, settings=settings,
                  extra=extra, name=f"{step}_{label(n)}")
    print(f"{step} {label(n)}: {timing} peak {json.loads(path.read_text())['memory']['peak_rss_mb']} MB")


def histories_total(n: int) -> int:
    return int(histories(n).lengths.sum())


def run_children(steps: list[str], sizes: list[int], workdir: Path | None) -> None:
    for step in steps:
        for n in sizes:
            cmd = [sys.executable, __file__, "--child", step, "--size", str(n)]
            tmp = None
            if step == "ingest":
                from ingest import generate

                tmp = Path(tempfile.mkdtemp(prefix="semrec-scale-", dir=workdir))
                t = time.perf_counter()
                gen = generate(tmp / "log.csv", n, seed=0)
                print(f"generated {n:,} rows ({gen['csv_bytes'] / 2**20:.0f} MB) in {time.perf_counter() - t:.0f} s")
                cmd += ["--csv", str(tmp / "log.csv")]
            try:
                proc = subprocess.run(cmd, check=False)
                if proc.returncode:
                    print(f"{step} {label(n)} failed (exit {proc.returncode})")
            finally:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)


def fit_exponents() -> None:
    """Slopes of log time and log peak RSS against log size per step, written into each file; the plot."""
    files = sorted(OUT.glob("*.json"))
    series: dict[str, list[tuple[Path, dict]]] = {}
    for f in files:
        rec = json.loads(f.read_text())
        if "size" in rec.get("extra", {}):  # not benchmarks/distributed.py's rows, which share the folder
            series.setdefault(rec["model"], []).append((f, rec))
    plot = {}
    for step, recs in series.items():
        recs.sort(key=lambda fr: fr[1]["extra"]["size"])
        size = np.array([r["extra"]["size"] for _, r in recs], dtype=float)
        wall = np.array([r["timing"]["wall_s"] for _, r in recs], dtype=float)
        rss = np.array([r["memory"]["peak_rss_mb"] for _, r in recs], dtype=float)
        exp = None
        if len(recs) >= 2:
            exp = {"wall_s": round(float(np.polyfit(np.log(size), np.log(wall), 1)[0]), 3),
                   "peak_rss_mb": round(float(np.polyfit(np.log(size), np.log(rss), 1)[0]), 3),
                   "sizes": [int(s) for s in size]}
        growth = None
        if step == "decoding" and {10_000, 1_000_000} <= set(size.astype(int)):
            growth = round(float(wall[size == 1_000_000][0] / wall[size == 10_000][0]), 3)
        for f, rec in recs:
            rec["extra"]["exponent"] = exp
            if step == "decoding":
                rec["extra"]["growth_10k_to_1M"] = growth
            if step in ITEM_STEPS and {10_000, 1_000_000} <= set(size.astype(int)):
                rec["extra"]["rss_ratio_10k_to_1M"] = round(float(rss[size == 1_000_000][0] /
                                                                  rss[size == 10_000][0]), 3)
            f.write_text(json.dumps(rec, indent=2, default=str) + "\n")
        plot[step] = (size, wall, rss, exp)
    if plot:
        draw(plot)


def draw(plot: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for step, (size, wall, rss, exp) in sorted(plot.items()):
        tag = f" (slope {exp['wall_s']:.2f})" if exp else ""
        axes[0].loglog(size, wall, "o-", label=step + tag)
        tag = f" (slope {exp['peak_rss_mb']:.2f})" if exp else ""
        axes[1].loglog(size, rss, "o-", label=step + tag)
    axes[0].set(xlabel="size (items; interactions for ingest)", ylabel="wall time (s)", title="time")
    axes[1].set(xlabel="size (items; interactions for ingest)", ylabel="peak RSS (MB)", title="peak memory")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("semrec cost growth (1 process, 1 thread; each point a fresh process)")
    fig.tight_layout()
    out = OUT / "scale.png"
    tmp = out.with_name(".scale.png.tmp")
    fig.savefig(tmp, format="png", dpi=110)
    os.replace(tmp, out)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    ap.add_argument("--sizes", nargs="+", type=int, default=None,
                    help="default: 10k 100k 1M items (ingest: 1M 10M 100M interactions)")
    ap.add_argument("--workdir", type=Path, default=None, help="where ingest CSVs are written (default: temp)")
    ap.add_argument("--fit-only", action="store_true", help="only exponents, plot and RESULTS.md")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--csv", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.size, args.csv)
        return
    if not args.fit_only:
        for step in args.steps:
            sizes = args.sizes or ([1_000_000, 10_000_000, 100_000_000] if step == "ingest"
                                   else [10_000, 100_000, 1_000_000])
            run_children([step], sizes, args.workdir)
    fit_exponents()
    from common import write_results_md

    print(f"wrote {write_results_md()}")


if __name__ == "__main__":
    main()
