"""Shared benchmark plumbing: result records in the DESIGN.md format and RESULTS.md regeneration.

Every benchmark calls `record(...)` once per measured configuration, then `write_results_md()`.
RESULTS.md is rebuilt from all JSON files under `benchmarks/results/`, so it never drifts from them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RESULTS_DIR = ROOT / "results"
SHARED_DATA = ROOT.parent.parent / "shared" / "data"

# Published rows (TIGER, NeurIPS 2023, Table 1; test set, full ranking), from DESIGN.md.
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "SASRec (BCE, published)": {
        "beauty": {"recall@5": .0387, "ndcg@5": .0249, "recall@10": .0605, "ndcg@10": .0318},
        "sports": {"recall@5": .0233, "ndcg@5": .0154, "recall@10": .0350, "ndcg@10": .0192},
        "toys": {"recall@5": .0463, "ndcg@5": .0306, "recall@10": .0675, "ndcg@10": .0374}},
    "BERT4Rec (published)": {
        "beauty": {"recall@5": .0203, "ndcg@5": .0124, "recall@10": .0347, "ndcg@10": .0170},
        "sports": {"recall@5": .0115, "ndcg@5": .0075, "recall@10": .0191, "ndcg@10": .0099},
        "toys": {"recall@5": .0116, "ndcg@5": .0071, "recall@10": .0203, "ndcg@10": .0099}},
    "S3-Rec (published)": {
        "beauty": {"recall@5": .0387, "ndcg@5": .0244, "recall@10": .0647, "ndcg@10": .0327},
        "sports": {"recall@5": .0251, "ndcg@5": .0161, "recall@10": .0385, "ndcg@10": .0204},
        "toys": {"recall@5": .0443, "ndcg@5": .0294, "recall@10": .0700, "ndcg@10": .0376}},
    "TIGER (published)": {
        "beauty": {"recall@5": .0454, "ndcg@5": .0321, "recall@10": .0648, "ndcg@10": .0384},
        "sports": {"recall@5": .0264, "ndcg@5": .0181, "recall@10": .0400, "ndcg@10": .0225},
        "toys": {"recall@5": .0521, "ndcg@5": .0371, "recall@10": .0712, "ndcg@10": .0432}},
    "RPG (published)": {
        "beauty": {"recall@5": .0550, "ndcg@5": .0381, "recall@10": .0809, "ndcg@10": .0464},
        "sports": {"recall@5": .0314, "ndcg@5": .0216, "recall@10": .0463, "ndcg@10": .0263},
        "toys": {"recall@5": .0592, "ndcg@5": .0401, "recall@10": .0869, "ndcg@10": .0490}},
}
# Which published rows sit beside which benchmark's table.
PUBLISHED_FOR = {"reproduce": ["SASRec (BCE, published)", "BERT4Rec (published)", "S3-Rec (published)",
                               "TIGER (published)"],
                 "generative": ["TIGER (published)", "RPG (published)"]}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (and finished children) in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                       stderr=subprocess.DEVNULL, text=True).strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def git_dirty() -> bool | None:
    """Whether tracked files differ from HEAD (None outside a git checkout)."""
    try:
        out = subprocess.check_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                      stderr=subprocess.DEVNULL, text=True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return bool(out.strip())


# The code a benchmark measures is the code at its START: a commit made while it runs must not be credited.
START = {"commit": git_commit(), "dirty": git_dirty()}


def input_hashes(settings: dict[str, Any]) -> dict[str, str]:
    """sha256 (first 16 hex) of every file or folder named by a setting (codes, vectors, features), so a number
    can be traced to the exact inputs it used."""
    import hashlib

    out: dict[str, str] = {}
    for key, value in settings.items():
        if not isinstance(value, str) or len(value) > 500 or "\n" in value:
            continue
        path = Path(value)
        try:
            files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else \
                ([path] if path.is_file() else [])
        except OSError:
            continue
        if not files or sum(f.stat().st_size for f in files) > 2 << 30:
            continue
        h = hashlib.sha256()
        for f in files:
            h.update(f.relative_to(path).as_posix().encode() if path.is_dir() else b"")
            with open(f, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
        out[key] = h.hexdigest()[:16]
    return out


def selection_of(history: Any, metric: str | None = None) -> dict[str, Any]:
    """What chose a trained model: the validation metric and score of its best epoch, the epoch, why it stopped."""
    if history is None:
        return {}
    return {"metric": metric, "valid_score": getattr(history, "best_score", None),
            "best_epoch": getattr(history, "best_epoch", None), "epochs": getattr(history, "epochs", None),
            "stop_reason": getattr(history, "stop_reason", None)}


def env_info(device: str = "cpu") -> dict[str, Any]:
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {"cpu_count": os.cpu_count(), "torch": torch_version, "device": device,
            "python": platform.python_version(), "machine": platform.machine(),
            "date": _dt.date.today().isoformat(), "commit": START["commit"], "dirty": START["dirty"],
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], ROOT.parent)] + sys.argv[1:])


def record(benchmark: str, *, dataset: str, model: str, variant: str | None = None, split: str | None = None,
           metrics: dict[str, float] | None = None, timing: dict[str, float] | None = None,
           settings: dict[str, Any] | None = None, extra: dict[str, Any] | None = None, device: str = "cpu",
           name: str | None = None, selection: dict[str, Any] | None = None) -> Path:
    """Write one result JSON under benchmarks/results/<benchmark>/ and return its path.

    `selection` says what chose the measured model (see `selection_of`: validation metric and score, best
    epoch, stop reason); every setting that names a file or folder gets its content hash under `inputs`.
    """
    settings = settings or {}
    rec = {"benchmark": benchmark, "dataset": dataset, "model": model, "variant": variant, "split": split,
           "metrics": metrics or {}, "timing": timing or {}, "memory": {"peak_rss_mb": round(peak_rss_mb(), 1)},
           "settings": settings, "selection": selection or {}, "inputs": input_hashes(settings),
           "env": env_info(device), "command": command_line(), "extra": extra or {}}
    stem = name or "_".join(str(p) for p in (dataset, model, variant, split) if p)
    out = RESULTS_DIR / benchmark / f"{stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rec, indent=2, default=str) + "\n")
    os.replace(tmp, out)
    return out


def load_results(benchmark: str | None = None) -> list[dict[str, Any]]:
    files = sorted((RESULTS_DIR / benchmark).glob("*.json") if benchmark else RESULTS_DIR.glob("*/*.json"))
    return [json.loads(f.read_text()) for f in files]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1 else f"{v:,.1f}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return "" if v is None else str(v)


def _table(rows: list[dict[str, Any]], benchmark: str) -> list[str]:
    metric_keys = sorted({k for r in rows for k in r["metrics"]}, key=_metric_order)
    timing_keys = sorted({k for r in rows for k in r["timing"]})
    extra_keys = sorted({k for r in rows for k, v in r["extra"].items() if not isinstance(v, (dict, list))
                         or (isinstance(v, list) and len(v) <= 5)})
    head = ["dataset", "model", "variant", "split", *metric_keys, *timing_keys, "peak MB", *extra_keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["model"], str(r["variant"]))):
        vals = [r["dataset"], r["model"], r["variant"], r["split"], *[r["metrics"].get(k) for k in metric_keys],
                *[r["timing"].get(k) for k in timing_keys], r["memory"].get("peak_rss_mb"),
                *[r["extra"].get(k) for k in extra_keys]]
        lines.append("| " + " | ".join(_fmt(v) for v in vals) + " |")
    for name in PUBLISHED_FOR.get(benchmark, []):
        for ds, m in PUBLISHED[name].items():
            if any(r["dataset"] == ds for r in rows):
                vals = [ds, name, "", "test", *[m.get(k) for k in metric_keys]]
                lines.append("| " + " | ".join(_fmt(v) for v in vals) + " |" + " |" * (len(head) - len(vals)))
    return lines


def _metric_order(key: str) -> tuple[int, str]:
    name, _, k = key.partition("@")
    return (int(k) if k.isdigit() else 10**6, name)


def write_results_md() -> Path:
    """Regenerate benchmarks/RESULTS.md from every results JSON (one section per benchmark)."""
    out = ROOT / "RESULTS.md"
    lines = ["# Benchmark results", "",
             "Generated by `benchmarks/common.py` from the JSON files under `benchmarks/results/` "
             "(one file per measured configuration; each holds the command, machine, date, commit and every "
             "setting). Do not edit by hand: re-run the benchmark.", ""]
    notes_dir = ROOT / "notes"
    for bench_dir in sorted(p for p in RESULTS_DIR.iterdir() if p.is_dir()) if RESULTS_DIR.exists() else []:
        rows = load_results(bench_dir.name)
        if not rows:
            continue
        lines += [f"## {bench_dir.name}", ""]
        note = notes_dir / f"{bench_dir.name}.md"
        if note.exists():
            lines += [note.read_text().strip(), ""]
        lines += _table(rows, bench_dir.name)
        commands = sorted({r["command"] for r in rows})
        envs = sorted({f"{r['env'].get('cpu_count')} CPUs, {r['env'].get('device')}, torch {r['env'].get('torch')}, "
                       f"{r['env'].get('date')}, commit {r['env'].get('commit')}" for r in rows})
        lines += ["", "Commands: " + "; ".join(f"`{c}`" for c in commands), "",
                  "Machines/dates: " + "; ".join(envs), ""]
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out)
    return out
