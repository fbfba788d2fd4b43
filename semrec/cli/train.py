"""`semrec train`, `semrec evaluate`, `semrec compare`: run folders in, tables out (logic lives in semrec.training)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from semrec.cli.console import err, out
from semrec.errors import ConfigError

COMPACT = {"box": box.SIMPLE_HEAVY, "collapse_padding": True, "pad_edge": False}  # fits 80 columns


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(k) for k in text.split(",") if k.strip()}))
    except ValueError:
        raise ConfigError(f"--ks {text!r}: give comma-separated cut-offs, e.g. --ks 5,10,20") from None
    if not ks:
        raise ConfigError("--ks needs at least one cut-off")
    return ks


def short(metric: str) -> str:
    """Compact column header: recall@10 -> R@10, ndcg@10 -> N@10, coverage@20 -> Cov@20, mrr -> MRR."""
    name, _, k = metric.partition("@")
    name = {"recall": "R", "ndcg": "N", "coverage": "Cov", "mrr": "MRR"}.get(name, name)
    return f"{name}@{k}" if k else name


def metrics_table(title: str, results: dict[str, dict[str, float]], ks: tuple[int, ...]) -> Table:
    """Rows = runs/splits, columns = Recall/NDCG@K, MRR and coverage@max K."""
    cols = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")] + ["mrr", f"coverage@{max(ks)}"]
    table = Table(title=title, caption="R = Recall, N = NDCG, Cov = catalogue coverage", **COMPACT)
    table.add_column("")
    for c in cols:
        table.add_column(short(c), justify="right")
    for name, m in results.items():
        table.add_row(name, *[f"{m[c]:.4f}" if c in m else "" for c in cols])
    return table


def breakdown_table(title: str, rows: list[dict]) -> Table:
    table = Table(title=title, **COMPACT)
    keys = [k for k in rows[0] if k not in ("bucket", "rows")] if rows else []
    for c in ["bucket", "rows", *keys]:
        table.add_column(short(c), justify="left" if c == "bucket" else "right")
    for r in rows:
        table.add_row(r["bucket"], f"{r['rows']:,}", *[f"{r[k]:.4f}" for k in keys])
    return table


def model_has_train(name: str) -> bool:
    """Whether model `name` is trained by the loop (its Config has a `train` field)."""
    import dataclasses

    from semrec.models import get_model_class

    return "train" in {f.name for f in dataclasses.fields(get_model_class(name).Config)}


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        model: str = typer.Argument(..., help="Registered model name, e.g. mostpop, itemknn, sasrec."),
        data: Path = typer.Option(..., "--data", help="Dataset folder (semrec data import)."),
        out_dir: Path = typer.Option(..., "--out", help="Run folder to write."),
        split: Optional[Path] = typer.Option(None, "--split", help="Saved split folder (semrec data split)."),
        split_kind: str = typer.Option("leave-one-out", help="Split to compute when --split is not given."),
        split_option: list[str] = typer.Option([], "--split-option", help="Split option key=value."),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON file of model options."),
        set_: list[str] = typer.Option([], "--set", help="Option override key=value, e.g. train.lr=1e-3, epochs=5."),
        device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1, mps (torch models)."),
        ks: str = typer.Option("5,10,20", help="Metric cut-offs."),
        exclude_history: bool = typer.Option(False, "--exclude-history",
                                             help="Mask history items when ranking (default: no, as published)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from RUN_DIR/checkpoints/last."),
        threads: Optional[int] = typer.Option(None, help="torch CPU threads for training and evaluation."),
    ) -> None:
        """Train MODEL on a dataset, evaluate valid + test with full ranking, write a run folder.

        Examples:

          semrec train itemknn --data data/beauty --split data/beauty/loo --out runs/beauty-itemknn

          semrec train sasrec --data data/beauty --set train.epochs=50 --set loss=ce --out runs/beauty-sasrec
        """
        from semrec.cli.options import parse_key_values
        from semrec.data import Dataset
        from semrec.training.run import build_model, make_split, train_run

        if threads:
            import torch

            torch.set_num_threads(threads)
            set_ = [*set_, f"train.num_threads={threads}"] if model_has_train(model) else set_
        ds = Dataset.load(data)
        sp = make_split(ds, split, split_kind, parse_key_values(split_option))
        m = build_model(model, ds.n_items, config, set_, device)
        err.print(f"training {model} on {ds} ({sp.kind}: {len(sp.train):,} train sequences, "
                  f"{len(sp.valid):,} valid / {len(sp.test):,} test rows)")
        provenance = {"data": str(data), "split_source": str(split) if split else f"computed: {split_kind}"}
        metrics = train_run(m, sp, out_dir, dataset=ds, ks=_ks(ks), exclude_history=exclude_history,
                            resume=resume, provenance=provenance)
        flag = ", history excluded" if exclude_history else ""
        out.print(metrics_table(f"{model} on {ds.name} (full ranking{flag})",
                                {"valid": metrics["valid"], "test": metrics["test"]}, _ks(ks)))
        err.print(f"wrote {out_dir}  (fit {metrics['timing']['fit_s']:.1f}s)")

    @app.command()
    def evaluate(
        run: Path = typer.Argument(..., help="Run folder written by `semrec train`."),
        split: str = typer.Option("test", help="valid or test."),
        exclude_history: bool = typer.Option(False, "--exclude-history", help="Mask history items when ranking."),
        ks: str = typer.Option("5,10,20", help="Metric cut-offs."),
        batch_size: int = typer.Option(1024, help="Users per scoring batch."),
        device: str = typer.Option("cpu", help="Device to score on."),
        breakdown: bool = typer.Option(True, help="Also print breakdowns by target popularity and history length."),
    ) -> None:
        """Re-evaluate a run's model; saves RUN/eval/<split>[-exclude-history] and prints metrics with 95% CIs.

        Example: semrec evaluate runs/beauty-itemknn --split test --exclude-history
        """
        from semrec.evaluation import evaluate as run_eval
        from semrec.training.run import eval_name, load_run

        if split not in ("valid", "test"):
            raise ConfigError(f"--split {split!r}: use valid or test")
        model, sp, _ = load_run(run, device=device)
        res = run_eval(model, getattr(sp, split), ks=_ks(ks), batch_size=batch_size,
                       exclude_history=exclude_history, train=sp.train, progress=True, name=split)
        res.save(run / "eval" / eval_name(split, exclude_history))
        table = Table(title=f"{model.name}: {split} ({len(res):,} rows, full ranking"
                            f"{', history excluded' if exclude_history else ''}, {res.settings['eval_s']:.2f}s)")
        for c in ("metric", "value", "95% CI"):
            table.add_column(c, justify="left" if c == "metric" else "right")
        for name, value in res.summary().items():
            lo, hi = res.confidence_interval(name)
            table.add_row(name, f"{value:.4f}", f"[{lo:.4f}, {hi:.4f}]")
        for k in res.ks:
            table.add_row(f"coverage@{k}", f"{res.metrics[f'coverage@{k}']:.4f}", "")
        out.print(table)
        if breakdown:
            out.print(breakdown_table("by target popularity (training interactions)", res.breakdown("popularity")))
            out.print(breakdown_table("by history length", res.breakdown("history_length")))

    @app.command()
    def compare(
        run_a: Path = typer.Argument(..., help="Baseline run folder (or EvalResult folder)."),
        run_b: Path = typer.Argument(..., help="Run folder compared against it."),
        split: str = typer.Option("test", help="valid or test."),
        exclude_history: bool = typer.Option(False, "--exclude-history", help="Compare the history-excluded evals."),
        metric: list[str] = typer.Option([], "--metric", help="Metrics to compare (default: all)."),
        n_boot: int = typer.Option(1000, help="Bootstrap resamples for the CI."),
    ) -> None:
        """Paired comparison of two runs on the same rows: delta (B - A), 95% bootstrap CI, t-test and Wilcoxon p.

        Example: semrec compare runs/beauty-mostpop runs/beauty-itemknn
        """
        from semrec.evaluation import compare as run_compare
        from semrec.training.run import load_eval

        a = load_eval(run_a, split, exclude_history)
        b = load_eval(run_b, split, exclude_history)
        default = [f"{m}@{k}" for k in sorted(set(a.ks) & set(b.ks)) for m in ("recall", "ndcg")] + ["mrr"]
        rows = run_compare(a, b, metrics=metric or default, n_boot=n_boot)
        table = Table(title=f"{split}: B = {run_b.name} vs A = {run_a.name} ({rows[0]['rows']:,} paired rows)",
                      caption="delta = B - A; CI: paired bootstrap; p(t): paired t-test; p(W): Wilcoxon "
                              "signed-rank; green/red: CI excludes 0")
        for c in ("metric", "A", "B", "delta", "95% CI", "p(t)", "p(W)"):
            table.add_column(c, justify="left" if c == "metric" else "right")
        for r in rows:
            sig = r["ci_low"] > 0 or r["ci_high"] < 0
            style = ("green" if r["delta"] > 0 else "red") if sig else None
            table.add_row(short(r["metric"]), f"{r['a']:.4f}", f"{r['b']:.4f}", f"{r['delta']:+.4f}",
                          f"{r['ci_low']:+.4f},{r['ci_high']:+.4f}",
                          f"{r['p_ttest']:.0e}", f"{r['p_wilcoxon']:.0e}", style=style)
        out.print(table)
