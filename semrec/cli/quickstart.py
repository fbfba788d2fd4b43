"""`semrec quickstart`: the whole pipeline on the built-in synthetic catalogue, no download needed.

synthetic catalogue -> dataset -> leave-one-out split -> MostPop, ItemKNN, SASRec -> metrics table and
sample recommendations with item titles. SASRec is used when `semrec.models.sasrec` is available.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.table import Table

from semrec.cli.console import err, out
from semrec.cli.data import stats_table
from semrec.data import Dataset, Split, SyntheticConfig, leave_one_out, synthetic_dataset
from semrec.errors import ConfigError

MODELS = ("mostpop", "itemknn", "sasrec")
# Options that keep the quick start under 3 minutes on a 2-core CPU: full-softmax SASRec (converges in ~10
# epochs on the synthetic data) over the synthetic sequences' full length (max 30).
QUICK_OPTIONS: dict[str, dict[str, Any]] = {
    "sasrec": {"loss": "ce", "max_len": 30, "train.epochs": 10, "train.patience": 3, "train.num_threads": 0}}


def model_available(name: str) -> bool:
    from semrec.models import get_model_class

    try:
        get_model_class(name)
        return True
    except (ConfigError, ImportError):
        return False


def run_quickstart(out_dir: Path, seed: int = 0, models: tuple[str, ...] = MODELS,
                   options: dict[str, dict[str, Any]] | None = None) -> tuple[Dataset, Split, dict[str, Any]]:
    """Build the synthetic dataset and split under `out_dir`, train each available model into
    `out_dir/runs/<model>`; returns (dataset, split, {model: metrics.json content})."""
    import torch

    from semrec.training.config import apply_overrides, auto_threads
    from semrec.training.run import build_model, train_run

    from semrec.io import check_output, write_marker

    options = QUICK_OPTIONS if options is None else options
    check_output(out_dir, "quickstart", overwrite=True)  # its own earlier output is replaced, nothing else
    out_dir.mkdir(parents=True, exist_ok=True)
    write_marker(out_dir, "quickstart")
    torch.set_num_threads(auto_threads())  # for evaluation too; training re-checks (train.num_threads=0)
    ds = synthetic_dataset(SyntheticConfig(seed=seed))
    ds.save(out_dir / "dataset")
    split = leave_one_out(ds)
    split.save(out_dir / "split")
    results: dict[str, Any] = {}
    for name in models:
        if not model_available(name):
            err.print(f"skipping {name}: semrec.models.{name} is not available in this version", style="yellow")
            continue
        t0 = time.perf_counter()
        model = build_model(name, ds.n_items, overrides=dict(options.get(name, {})))
        if hasattr(model, "train_config"):
            model.config = apply_overrides(model.config, {"train.seed": seed})
        results[name] = train_run(model, split, out_dir / "runs" / name, dataset=ds, progress=False, overwrite=True,
                                  provenance={"data": str(out_dir / "dataset"), "split_source": str(out_dir / "split")})
        err.print(f"trained {name} in {time.perf_counter() - t0:.1f}s")
    return ds, split, results


def sample_row(split: Split, run_dir: Path, name: str, baseline_dir: Path | None = None, k: int = 5
               ) -> tuple[int, str]:
    """A test row with >= 5 history items whose target model `name` ranks in its top k and, when a baseline
    run is given, the baseline does not (chosen openly, and the reason is printed)."""
    from semrec.training.run import load_eval

    def hits(path: Path) -> np.ndarray:
        res = load_eval(path, "test")
        first = res.ranks[res.target_offsets[:-1]]
        return (first >= 0) & (first < k)

    ok = hits(run_dir) & (split.test.histories.lengths >= 5)
    why = f"the first user with >= 5 purchases whose next purchase {name} ranks in its top {k}"
    if baseline_dir is not None and (ok & ~hits(baseline_dir)).any():
        ok &= ~hits(baseline_dir)
        why += f" and {baseline_dir.name} does not"
    rows = np.flatnonzero(ok)
    return (int(rows[0]), why) if len(rows) else (0, "the first test user")


def sample_table(ds: Dataset, split: Split, run_dirs: dict[str, Path], row: int, k: int = 5) -> Table:
    """A user's recent history and each model's top-k, by title; the held-out test item is starred."""
    from semrec.models import Recommender

    titles = ds.items["title"].to_numpy()
    hist = split.test.histories.select(np.array([row]))
    target = int(split.test.targets[row][0])
    table = Table(title=f"user {ds.users['user_id'][int(split.test.users[row])]}: last {min(5, len(hist[0]))} "
                        f"purchases -> top {k} (* = the held-out next purchase: {titles[target]})")
    table.add_column("")
    table.add_column("item")
    for i, item in enumerate(hist[0][-5:].tolist()):
        table.add_row("history" if i == 0 else "", str(titles[item]))
    for name, path in run_dirs.items():
        ids, _ = Recommender.load(path / "model").recommend(hist, k=k)
        for j, item in enumerate(ids[0].tolist()):
            table.add_row(name if j == 0 else "", ("* " if item == target else "") + str(titles[item]),
                          end_section=j == k - 1)
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def quickstart(out_dir: Path = typer.Option(Path("runs/quickstart"), "--out", help="Where to write the run."),
                   seed: int = typer.Option(0, help="Seed of the synthetic catalogue and of training."),
                   model: list[str] = typer.Option(list(MODELS), "--model", help="Models to train (repeatable).")
                   ) -> None:
        """Synthetic catalogue -> dataset -> leave-one-out split -> MostPop, ItemKNN, SASRec -> metrics.

        Example: semrec quickstart --out runs/quickstart
        """
        from semrec.cli.train import metrics_table

        t0 = time.perf_counter()
        ds, split, results = run_quickstart(out_dir, seed, tuple(model))
        out.print(stats_table(ds))
        out.print(metrics_table(f"test set ({len(split.test):,} users, full ranking over {ds.n_items:,} items)",
                                {name: r["test"] for name, r in results.items()}, (5, 10, 20)))
        best = list(results)[-1]
        baseline = out_dir / "runs" / "mostpop" if "mostpop" in results and best != "mostpop" else None
        row, why = sample_row(split, out_dir / "runs" / best, best, baseline)
        err.print(f"sample: {why}")
        out.print(sample_table(ds, split, {n: out_dir / "runs" / n for n in results}, row))
        err.print(f"quick start done in {time.perf_counter() - t0:.0f}s; runs in {out_dir}/runs "
                  f"(try: semrec compare {out_dir}/runs/mostpop {out_dir}/runs/{list(results)[-1]})")
        out.print(serve_hint(out_dir / "runs" / best, ds.item_ids()[split.test.histories[row][-2:]].tolist()),
                  soft_wrap=True)


def serve_hint(run_dir: Path, history: list[str]) -> str:
    """How to serve a run and one request to try, printed at the end of the quick start."""
    import json

    body = json.dumps({"history": history, "k": 5})
    return (f"serve it:  semrec serve {run_dir} --port 8000   (explorer page: http://127.0.0.1:8000/, "
            f"API docs: /docs)\n"
            f"then try:  curl -s -X POST http://127.0.0.1:8000/recommend -H 'Content-Type: application/json' "
            f"-d '{body}'")
