"""`semrec quickstart`: the whole pipeline on the built-in synthetic catalogue, no download needed."""

from __future__ import annotations

from pathlib import Path

import typer

from semrec.cli.console import err, out
from semrec.cli.data import stats_table
from semrec.data import SyntheticConfig, leave_one_out, synthetic_dataset


def register(app: typer.Typer) -> None:
    @app.command()
    def quickstart(out_dir: Path = typer.Option(Path("runs/quickstart"), "--out", help="Where to write the run."),
                   seed: int = typer.Option(0, help="Seed of the synthetic catalogue.")) -> None:
        """Synthetic catalogue -> dataset -> leave-one-out split -> statistics.

        Example: semrec quickstart --out runs/quickstart
        """
        ds = synthetic_dataset(SyntheticConfig(seed=seed))
        ds.save(out_dir / "dataset")
        split = leave_one_out(ds)
        split.save(out_dir / "split")
        err.print(f"wrote {out_dir}/dataset and {out_dir}/split")
        out.print(stats_table(ds))
