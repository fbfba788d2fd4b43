"""`semrec serve RUN_DIR`: the HTTP API and explorer page for one trained run (FastAPI + uvicorn)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from semrec.cli.console import err
from semrec.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(run_dir: Path = typer.Argument(..., help="Run folder (from `semrec train`) or model folder."),
              host: str = typer.Option("127.0.0.1", help="Address to bind; the default is reachable from this "
                                                         "machine only."),
              port: int = typer.Option(8000, help="TCP port."),
              workers: int = typer.Option(1, help="Worker processes (each loads the model; they share the state)."),
              state: Optional[Path] = typer.Option(None, help="Folder for live catalogue changes (default "
                                                             "RUN_DIR/serving)."),
              data: Optional[Path] = typer.Option(None, help="Dataset folder (default: the run's)."),
              device: str = typer.Option("cpu", help="torch device."),
              threads: int = typer.Option(0, help="torch threads per worker (0 = torch's default)."),
              max_batch: int = typer.Option(64, help="Most concurrent requests answered by one model call."),
              api_key_env: str = typer.Option("SEMREC_API_KEY", help="Environment variable holding the API key "
                                                                     "that POST/DELETE /items require (unset: none)."),
              set_: list[str] = typer.Option([], "--set", help="Decoding option key=value for generative runs: "
                                                              "beam, reserve_new (share of k kept for items unseen "
                                                              "in training, e.g. added ones), decode_batch, "
                                                              "unseen_last_code (siblings, the server's default: an "
                                                              "unseen item's last code scores as its trained "
                                                              "siblings' mean; model: the model's own)."),
              log_level: str = typer.Option("warning", help="uvicorn log level."),
              ) -> None:
        """Serve recommendations, live item updates and the explorer page (http://HOST:PORT/, API docs at /docs).

        Example: semrec serve runs/quickstart/runs/sasrec --port 8000
        """
        import uvicorn

        if workers < 1 or not 0 < port < 65536 or max_batch < 1 or threads < 0:
            raise ConfigError("--workers and --max-batch must be >= 1, --threads >= 0, --port in 1..65535")
        from semrec.serving.engine import model_dir

        model_dir(run_dir)  # fail fast, before uvicorn starts, on a folder that is not a run
        if set_:
            import json

            from semrec.models import Recommender
            from semrec.serving.engine import SERVE_OPTIONS
            from semrec.training.config import apply_overrides

            cfg = Recommender.load(model_dir(run_dir)).config
            names = {o.split("=", 1)[0].strip().replace("-", "_") for o in set_}
            bad = sorted(n for n in names if n not in SERVE_OPTIONS or not hasattr(cfg, n))
            if bad:
                raise ConfigError(f"--set {', '.join(bad)}: not a serving option of this run (serving options: "
                                  f"{', '.join(sorted(o for o in SERVE_OPTIONS if hasattr(cfg, o))) or 'none'})")
            apply_overrides(cfg, list(set_))  # values checked here, not in each worker
            os.environ["SEMREC_SERVE_SET"] = json.dumps(list(set_))
        api_key = os.environ.get(api_key_env) or None
        if host not in LOOPBACK and api_key is None:
            err.print(f"warning: binding {host} without an API key: anyone who can reach it may add or delete items "
                      f"(set {api_key_env})")
        os.environ.update({"SEMREC_SERVE_RUN": str(run_dir), "SEMREC_SERVE_STATE": str(state or ""),
                           "SEMREC_SERVE_DATA": str(data or ""), "SEMREC_SERVE_DEVICE": device,
                           "SEMREC_SERVE_THREADS": str(threads), "SEMREC_SERVE_MAX_BATCH": str(max_batch)})
        if api_key:
            os.environ["SEMREC_API_KEY"] = api_key
        err.print(f"serving {run_dir} on http://{host}:{port}/ (API docs: /docs, metrics: /metrics)")
        uvicorn.run("semrec.serving.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, access_log=False)
