"""`semrec train`, `semrec evaluate`, `semrec compare`: run folders in, tables out (logic lives in semrec.training)."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from semrec.cli.console import err, out
from semrec.cli.options import Device, Overwrite, Threads, check_device, parse_ks, set_threads
from semrec.data.splits import SPLITS
from semrec.errors import ConfigError

class EvalSplit(str, enum.Enum):
    valid = "valid"
    test = "test"


SplitKind = enum.Enum("SplitKind", {k.replace("-", "_"): k for k in SPLITS}, type=str)  # type: ignore[misc]

COMPACT = {"box": box.SIMPLE_HEAVY, "collapse_padding": True, "pad_edge": False}  # fits 80 columns


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
        split_kind: SplitKind = typer.Option("leave-one-out", help="Split to compute when --split is not given."),
        split_option: list[str] = typer.Option([], "--split-option", help="Split option key=value."),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON file of model options."),
        set_: list[str] = typer.Option([], "--set", help="Option override key=value, e.g. train.lr=1e-3, epochs=5."),
        device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1, mps (torch models)."),
        ks: str = typer.Option("5,10,20", help="Metric cut-offs."),
        exclude_history: bool = typer.Option(False, "--exclude-history",
                                             help="Mask history items when ranking (default: no, as published)."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted (or finished) run from its "
                                    "last checkpoint."),
        overwrite: Overwrite = False,
        threads: Threads = None,
        init: Optional[Path] = typer.Option(None, "--init", help="Start from a pretrained run folder (text-seq: "
                                            "adapter and Transformer carried over, item table not)."),
        nproc: int = typer.Option(1, "--nproc", min=1, help="Train on N processes on this machine "
                                  "(torch.distributed data parallel; same as `torchrun --nproc-per-node N -m "
                                  "semrec train ...`). --set train.batch_size is the global batch."),
    ) -> None:
        """Train MODEL on a dataset, evaluate valid + test with full ranking, write a run folder.

        The run folder appears only when the run is complete (it is built in a hidden `.NAME.partial` beside it);
        an interrupted run continues with `--resume`.

        Examples:

          semrec train itemknn --data data/beauty --split data/beauty/loo --out runs/beauty-itemknn

          semrec train sasrec --data data/beauty --set train.epochs=50 --set loss=ce --out runs/beauty-sasrec

          semrec train sasrec --data data/beauty --nproc 2 --out runs/beauty-sasrec-ddp
        """
        from semrec.cli.data import split_options
        from semrec.data import Dataset
        from semrec.io import check_output
        from semrec.models import get_model_class
        from semrec.training.distributed import env_world, launch_local
        from semrec.training.run import make_split, preflight, prepare_model, resolve_config, train_run

        check_output(out_dir, "run", overwrite or resume)
        check_device(device)
        kind = str(getattr(split_kind, "value", split_kind))
        if split is not None and (split_option or kind != "leave-one-out"):
            raise ConfigError("--split loads a saved split; --split-kind/--split-option only apply without it")
        split_opts = split_options(kind, split_option, "--split-option") if split is None else {}
        if threads and model_has_train(model):
            set_ = [*set_, f"train.num_threads={threads}"]
        metric_ks = parse_ks(ks)
        cfg = resolve_config(model, config, set_, device)  # options checked before any data is read
        preflight(model, cfg)
        if init is not None and not hasattr(get_model_class(model), "init_from"):
            raise ConfigError(f"--init: {model} cannot start from a pretrained run (only text-seq can)")
        if init is not None and not (init / "model" / "model.safetensors").exists():
            raise ConfigError(f"--init {init}: not a run folder with model/model.safetensors (fix: pass a folder "
                              "written by `semrec train text-seq`)")
        if nproc > 1:  # options are checked; each process repeats this command without --nproc
            if not model_has_train(model):
                raise ConfigError(f"--nproc: {model} is not trained by semrec.training (fix: drop --nproc)")
            raise typer.Exit(launch_local(nproc, sys.argv[1:]))
        main_rank = env_world().is_main
        set_threads(threads)
        ds = Dataset.load(data)
        sp = make_split(ds, split, kind, split_opts)
        m = get_model_class(model)(ds.n_items, cfg)
        init_info = prepare_model(m, data, init)
        if main_rank:
            err.print(f"training {model} on {ds} ({sp.kind}: {len(sp.train):,} train sequences, "
                      f"{len(sp.valid):,} valid / {len(sp.test):,} test rows)")
        provenance = {"data": str(data), "split_source": str(split) if split else f"computed: {sp.kind}",
                      **init_info}
        metrics = train_run(m, sp, out_dir, dataset=ds, ks=metric_ks, exclude_history=exclude_history,
                            resume=resume, overwrite=overwrite, provenance=provenance)
        if not main_rank:
            return
        flag = ", history excluded" if exclude_history else ""
        out.print(metrics_table(f"{model} on {ds.name} (full ranking{flag})",
                                {"valid": metrics["valid"], "test": metrics["test"]}, metric_ks))
        err.print(f"wrote {out_dir}  (fit {metrics['timing']['fit_s']:.1f}s)")

    @app.command()
    def evaluate(
        run: Path = typer.Argument(..., help="Run folder written by `semrec train`."),
        split: EvalSplit = typer.Option("test", help="valid or test."),
        exclude_history: bool = typer.Option(False, "--exclude-history", help="Mask history items when ranking."),
        ks: str = typer.Option("5,10,20", help="Metric cut-offs."),
        batch_size: int = typer.Option(1024, min=1, help="Users per scoring batch."),
        device: Device = "cpu",
        breakdown: bool = typer.Option(True, help="Also print breakdowns by target popularity and history length."),
        overwrite: Overwrite = False,
        threads: Threads = None,
        item_chunk: Optional[int] = typer.Option(None, "--item-chunk", min=1, help="Items scored at once by "
                                                 "dot-product models (default: batch x chunk <= 2^25 scores)."),
        nproc: int = typer.Option(1, "--nproc", min=1, help="Score the users on N processes (torch.distributed); "
                                  "the metrics are identical to one process's."),
    ) -> None:
        """Re-evaluate a run's model; saves RUN/eval/<split>[-exclude-history] and prints metrics with 95% CIs.

        An earlier evaluation under other cut-offs is kept unless --overwrite is given.

        Example: semrec evaluate runs/beauty-itemknn --split test --exclude-history
        """
        from semrec.evaluation import evaluate as run_eval
        from semrec.training.distributed import join, launch_local, rank_device
        from semrec.training.run import check_eval_target, check_run_dir, eval_name, load_run

        split_name = split.value if hasattr(split, "value") else split
        metric_ks = parse_ks(ks)
        check_device(device)
        target = check_run_dir(run) / "eval" / eval_name(split_name, exclude_history)
        check_eval_target(target, metric_ks, overwrite)
        if nproc > 1:
            raise typer.Exit(launch_local(nproc, sys.argv[1:]))
        world = join(device)
        set_threads(threads)
        model, sp, _ = load_run(run, device=rank_device(device, world))
        res = run_eval(model, getattr(sp, split_name), ks=metric_ks, batch_size=batch_size,
                       exclude_history=exclude_history, train=sp.train, progress=True, name=split_name,
                       item_chunk=item_chunk, world=world)
        if not world.is_main:
            return
        res.save(target)
        table = Table(title=f"{model.name}: {split_name} ({len(res):,} rows, full ranking"
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
        split: EvalSplit = typer.Option("test", help="valid or test."),
        exclude_history: bool = typer.Option(False, "--exclude-history", help="Compare the history-excluded evals."),
        metric: list[str] = typer.Option([], "--metric", help="Metrics to compare (default: all)."),
        n_boot: int = typer.Option(1000, min=1, help="Bootstrap resamples for the CI."),
    ) -> None:
        """Paired comparison of two runs on the same rows: delta (B - A), 95% bootstrap CI, t-test and Wilcoxon p.

        Example: semrec compare runs/beauty-mostpop runs/beauty-itemknn
        """
        from semrec.evaluation import compare as run_compare
        from semrec.training.run import load_eval

        from semrec.training.config import metric_k

        split = split.value if hasattr(split, "value") else split
        for m in metric:
            metric_k(m)
        a = load_eval(run_a, split, exclude_history)
        b = load_eval(run_b, split, exclude_history)
        unknown = [m for m in metric if m not in a.summary() or m not in b.summary()]
        if unknown:
            raise ConfigError(f"--metric {unknown[0]!r} was not computed for both runs; available: "
                              f"{sorted(set(a.summary()) & set(b.summary()))}")
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
