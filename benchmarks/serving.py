"""Serving benchmarks: HTTP load on `semrec serve`, and batch recommendations to a file.

load:  start `semrec serve RUN` on 127.0.0.1, send N POST /recommend requests (k = 20, real test histories of the
       run's dataset, cycled) from C concurrent keep-alive connections; throughput, p50/p99 latency, errors.
batch: `recommend_file` over U synthetic histories (random catalogue ids, 1-20 per user) in a child process, so
       its peak RSS is that of the batch job alone; run at two sizes to show memory does not grow with the file.

    python benchmarks/serving.py load --run runs/beauty-sasrec --requests 10000 --concurrency 32
    python benchmarks/serving.py batch --run runs/beauty-sasrec --users 1000000
    python benchmarks/serving.py new-items --run runs/beauty-tiger-hier --users 1000

The machine is shared: every result records os.getloadavg() before and after in extra.loadavg.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import record, write_results_md  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (worker processes), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:  # no children file (or the process is gone): count the parent alone
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _histories(run: Path, n: int) -> list[list[str]]:
    from semrec.data import Dataset, Split
    from semrec.serving.engine import dataset_dir

    ds = Dataset.load(dataset_dir(run, None))
    test = Split.load(run / "split").test.histories
    ids = ds.item_ids()
    return [ids[test[i][-50:]].tolist() for i in range(min(n, len(test)))]


def load(args: argparse.Namespace) -> None:
    import httpx

    from semrec.models import Recommender
    from semrec.serving.engine import model_dir
    from semrec.serving.loadtest import run_load

    run = Path(args.run)
    model_name = json.loads((model_dir(run) / "config.json").read_text())["model"]
    port = _free_port()
    log = open(f"/tmp/serving-bench-{model_name}.log", "wb")
    state = Path(args.state or f"/tmp/serving-bench-state-{model_name}-{os.getpid()}")
    cmd = [sys.executable, "-m", "semrec", "serve", str(run), "--port", str(port), "--threads", str(args.threads),
           "--workers", str(args.workers), "--max-batch", str(args.max_batch), "--state", str(state)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    load_before = os.getloadavg()
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            raise SystemExit("server did not start")
        payloads = [{"history": h, "k": args.k} for h in _histories(run, 2000)]
        run_load("127.0.0.1", port, "/recommend", payloads[:50], requests=200, concurrency=args.concurrency)  # warm-up
        cpu0 = _cpu_seconds(proc.pid)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        res = run_load("127.0.0.1", port, "/recommend", payloads, requests=args.requests,
                       concurrency=args.concurrency, max_seconds=args.max_seconds).summary()
        server_cpu_s = _cpu_seconds(proc.pid) - cpu0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        client_cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        gauge = {l.split()[0]: float(l.split()[1]) for l in metrics.splitlines()
                 if l.startswith(("semrec_batches_total", "semrec_batched_requests_total"))}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    targets = {"sasrec": (500, 50), "tiger-hier": (200, 100)}.get(model_name)
    mean_batch = gauge.get("semrec_batched_requests_total", 0) / max(gauge.get("semrec_batches_total", 1), 1)
    extra = {**{k: res[k] for k in ("requests", "concurrency", "requests_per_s", "p50_ms", "p99_ms", "errors")},
             "p90_ms": res["p90_ms"], "max_ms": res["max_ms"], "completed": res["completed"],
             "statuses": res["statuses"], "mean_model_batch": round(mean_batch, 2), "k": args.k,
             "workers": args.workers, "torch_threads": args.threads, "shared_machine": True,
             "nice": os.nice(0),  # this process's (and the server's) scheduling niceness; 0 = normal priority
             # CPU the server spent per answered request (all its processes): what one request costs, whatever the
             # load of the shared machine; 1000 / this = requests/s one dedicated core would sustain
             "server_cpu_ms_per_request": round(1000 * server_cpu_s / max(res["completed"], 1), 3),
             "requests_per_s_per_dedicated_core": round(res["completed"] / server_cpu_s, 1) if server_cpu_s else None,
             "client_cpu_ms_per_request": round(1000 * client_cpu_s / max(res["completed"], 1), 3),
             "loadavg": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
             "target": {"requests_per_s": targets[0], "p99_ms": targets[1]} if targets else None,
             "target_met": (res["requests_per_s"] >= targets[0] and res["p99_ms"] < targets[1] and res["errors"] == 0)
             if targets else None}
    print(json.dumps(extra, indent=2))
    _ = Recommender  # the served model is loaded by the server process
    record("serving", dataset=args.dataset, model=model_name, variant="http-load" + (f"-{args.tag}" if args.tag else ""),
           timing={"wall_s": res["wall_s"]},
           settings={"run": str(run), "k": args.k, "requests": args.requests, "concurrency": args.concurrency,
                     "workers": args.workers, "threads": args.threads, "max_batch": args.max_batch,
                     "histories": "the run's test histories (last 50 items), cycled",
                     "batcher": "inline"},  # the model runs on the event loop's thread (semrec.serving.batcher)
           extra=extra, name=f"{args.dataset}_{model_name}_load" + (f"_{args.tag}" if args.tag else ""))
    write_results_md()


def _make_input(path: Path, n_users: int, item_ids: np.ndarray, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    schema = pa.schema([("user_id", pa.string()), ("history", pa.list_(pa.string()))])
    with pq.ParquetWriter(path, schema) as w:
        for s in range(0, n_users, 100_000):
            n = min(100_000, n_users - s)
            lengths = rng.integers(1, 21, n)
            items = item_ids[rng.integers(0, len(item_ids), int(lengths.sum()))]
            off = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
            w.write_table(pa.table({"user_id": pa.array([f"u{i}" for i in range(s, s + n)]),
                                    "history": pa.ListArray.from_arrays(off, pa.array(items, pa.string()))},
                                   schema=schema))


def batch_child(args: argparse.Namespace) -> None:
    """Runs in a child process: one batch job, then prints its own counters and peak RSS as JSON."""
    import torch

    from semrec.serving import Engine, recommend_file

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    engine = Engine.from_run(args.run, state_dir=f"/tmp/serving-bench-batchstate-{os.getpid()}")
    load_s = time.perf_counter() - t0
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    info = recommend_file(engine, args.input, args.out, k=args.k, batch_size=args.batch_size, overwrite=True,
                          progress=False)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    info |= {"cpu_s": round(cpu_s, 2), "users_per_cpu_s": round(info["rows"] / cpu_s, 1) if cpu_s else None,
             "load_s": round(load_s, 2), "rss_after_load_mb": round(rss_loaded, 1),
             "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    print("RESULT " + json.dumps(info))


def batch(args: argparse.Namespace) -> None:
    from semrec.data import Dataset
    from semrec.serving.engine import dataset_dir, model_dir

    run = Path(args.run)
    model_name = json.loads((model_dir(run) / "config.json").read_text())["model"]
    ids = Dataset.load(dataset_dir(run, None)).item_ids().astype(str)
    rows = []
    for n in args.users:
        inp = Path(f"/tmp/serving-bench-histories-{n}.parquet")
        if not inp.exists():
            _make_input(inp, n, ids)
        load_before = os.getloadavg()
        out = subprocess.run([sys.executable, __file__, "batch-child", "--run", str(run), "--input", str(inp),
                              "--out", f"/tmp/serving-bench-recs-{n}.parquet", "--k", str(args.k),
                              "--batch-size", str(args.batch_size), "--threads", str(args.threads)],
                             capture_output=True, text=True, check=True)
        info = json.loads(next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))[7:])
        info["input_mb"] = round(inp.stat().st_size / 2**20, 1)
        info["loadavg"] = {"before": [round(x, 2) for x in load_before],
                           "after": [round(x, 2) for x in os.getloadavg()]}
        print(json.dumps(info))
        rows.append(info)
        record("serving", dataset=args.dataset, model=model_name, variant=f"batch-{n}",
               timing={"wall_s": info["wall_s"], "load_s": info["load_s"]},
               settings={"run": str(run), "k": args.k, "users": n, "batch_size": args.batch_size,
                         "threads": args.threads, "histories": "synthetic: 1-20 random catalogue ids per user"},
               extra={"users": n, "users_per_s": info["users_per_s"], "users_per_cpu_s": info["users_per_cpu_s"],
                      "peak_rss_mb": info["peak_rss_mb"],
                      "rss_after_load_mb": info["rss_after_load_mb"], "input_mb": info["input_mb"],
                      "shared_machine": True, "loadavg": info["loadavg"]},
               name=f"{args.dataset}_{model_name}_batch_{n}")
    write_results_md()


def new_items(args: argparse.Namespace) -> None:
    """Are items added by text recommendable by a generative run? For U validation users, add a near-copy of each
    one's validation target (same attributes, title + " (2027 edition)") through `Engine.add_items`, then compare
    how often the copy and the original reach the top-k, with the last code scored by the model (`model`) or by the
    copy's trained siblings (`siblings`, the server's default)."""
    import shutil

    import torch

    from semrec.data import Split
    from semrec.serving import Engine, Query

    torch.set_num_threads(args.threads)
    run = Path(args.run)
    state = Path(f"/tmp/serving-bench-newitems-{os.getpid()}")
    shutil.rmtree(state, ignore_errors=True)
    engine = Engine.from_run(run, state_dir=state, options=["unseen_last_code=model"])
    valid = Split.load(run / "split").valid
    rng = np.random.default_rng(args.seed)
    users = rng.choice(len(valid.histories), min(args.users, len(valid.histories)), replace=False)
    cat, model = engine.catalogue, engine.model
    hists = [np.asarray(valid.histories[u]) for u in users]
    targets = np.asarray([int(np.ravel(valid.targets[u])[0]) for u in users])
    originals = np.unique(targets)
    rows = [{"item_id": f"COPY-{cat.ids[t]}", **{k: v for k, v in cat.record(int(t)).items() if k in (
        "title", "brand", "categories")}} for t in originals]
    for r in rows:
        r["title"] = str(r.get("title", "")) + " (2027 edition)"
    t0 = time.perf_counter()
    added = engine.add_items(rows)
    add_s = time.perf_counter() - t0
    copy = {int(t): cat.index[r["item_id"]] for t, r in zip(originals, rows)}
    ok = {int(t) for t, a in zip(originals, added) if a["recommendable"]}
    same_prefix = np.mean([(model.codes[copy[t], :-1] == model.codes[t, :-1]).all() for t in ok])
    metrics = {}
    for mode in ("model", "siblings"):
        model.config.unseen_last_code = mode
        res = engine.recommend([Query(h, args.k, False) for h in hists])
        orig = np.asarray([t in r.items for t, r in zip(targets, res)])
        cp = np.asarray([copy[int(t)] in r.items for t, r in zip(targets, res)])
        metrics[mode] = {f"original@{args.k}": round(float(orig.mean()), 4), f"copy@{args.k}": round(float(cp.mean()), 4),
                         f"copy@{args.k}_given_original": round(float(cp[orig].mean()), 4) if orig.any() else None,
                         "added_items_per_list": round(float(np.mean([np.isin(r.items, list(copy.values())).sum()
                                                                      for r in res])), 3)}
        print(mode, metrics[mode])
    shutil.rmtree(state, ignore_errors=True)
    record("serving", dataset=args.dataset, model=model.name, variant="new-items", split="valid",
           metrics={f"{m}/{k}": v for m, d in metrics.items() for k, v in d.items()},
           timing={"add_s": round(add_s, 2)},
           settings={"run": str(run), "users": len(users), "k": args.k, "seed": args.seed,
                     "copy": "same attributes, title + ' (2027 edition)'", "exclude_history": False,
                     "modes": ["model", "siblings"]},
           extra={"added": len(rows), "recommendable": len(ok), "copies_sharing_the_original_prefix":
                  round(float(same_prefix), 4), "by_mode": metrics, "shared_machine": True},
           name=f"{args.dataset}_{model.name}_new_items")
    write_results_md()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)  # every mode: a run, k and its torch threads
    common.add_argument("--run", required=True)
    common.add_argument("--k", type=int, default=20)
    common.add_argument("--threads", type=int, default=1)
    common.add_argument("--dataset", default="beauty")
    lo = sub.add_parser("load", parents=[common])
    lo.add_argument("--requests", type=int, default=10_000)
    lo.add_argument("--concurrency", type=int, default=32)
    lo.add_argument("--workers", type=int, default=1)
    lo.add_argument("--max-batch", type=int, default=64)
    lo.add_argument("--max-seconds", type=float, default=600)
    lo.add_argument("--state", default=None)
    lo.add_argument("--tag", default="", help="suffix for the variant and file name (e.g. a second condition)")
    ba = sub.add_parser("batch", parents=[common])
    ba.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    ba.add_argument("--batch-size", type=int, default=4096)
    ni = sub.add_parser("new-items", parents=[common])
    ni.add_argument("--users", type=int, default=1000)
    ni.add_argument("--seed", type=int, default=0)
    ch = sub.add_parser("batch-child", parents=[common])
    for a in ("--input", "--out"):
        ch.add_argument(a, required=True)
    ch.add_argument("--batch-size", type=int, default=4096)
    args = ap.parse_args()
    {"load": load, "batch": batch, "batch-child": batch_child, "new-items": new_items}[args.mode](args)


if __name__ == "__main__":
    main()
