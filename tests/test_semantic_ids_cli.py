"""`semrec embed` and `semrec ids fit|encode|report` end to end on a small synthetic catalogue."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(*args: str) -> SimpleNamespace:
    """In-process CLI call (one import of torch for the whole test); stdout/stderr as strings."""
    from semrec.cli import _register, app

    if not app.registered_groups:
        _register()
    r = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return SimpleNamespace(returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr)


def test_embed_fit_encode_report(tmp_path):
    from semrec.data import SyntheticConfig, synthetic_dataset
    from semrec.semantic_ids import CodeTable

    ds = synthetic_dataset(SyntheticConfig(n_users=150, n_items=120, n_brands=10))
    ds.save(tmp_path / "ds")
    r = run("embed", str(tmp_path / "ds"), "--out", str(tmp_path / "text.safetensors"),
            "--cache", str(tmp_path / "cache"))
    assert r.returncode == 0, r.stderr
    assert "text: 120 encoded, 0 from cache" in r.stderr
    r = run("embed", str(tmp_path / "ds"), "--source", "cf", "--from", "sppmi", "--dim", "8",
            "--out", str(tmp_path / "cf.safetensors"))
    assert r.returncode == 0, r.stderr
    run_dir = tmp_path / "ids"
    r = run("ids", "fit", str(tmp_path / "text.safetensors"), str(tmp_path / "cf.safetensors"), "--weights", "2,1",
            "--levels", "2", "--codebook-size", "8", "--dataset", str(tmp_path / "ds"), "--out", str(run_dir))
    assert r.returncode == 0, r.stderr
    assert "collision" in r.stdout and "coherence" in r.stdout
    for name in ("tokenizer.json", "tokenizer.safetensors", "codes.safetensors", "codes.parquet", "index.json",
                 "diagnostics.json"):
        assert (run_dir / name).exists(), name
    table = CodeTable.load(run_dir / "codes.safetensors")
    assert table.codes.shape[0] == 120 and table.is_unique()
    index = json.loads((run_dir / "index.json").read_text())
    assert list(index) == ds.item_ids().tolist()[:len(index)] and index[ds.item_ids()[0]][0].startswith("<a_")
    # re-encoding the catalogue returns the table; a changed item gets a fresh, non-colliding code
    r = run("ids", "encode", str(run_dir), str(tmp_path / "text.safetensors"), str(tmp_path / "cf.safetensors"),
            "--out", str(tmp_path / "again.parquet"))
    assert r.returncode == 0 and "120 already in the table" in r.stderr, r.stderr
    again = pl.read_parquet(tmp_path / "again.parquet")
    assert np.array_equal(np.asarray(again["codes"].to_list()), table.codes)
    r = run("ids", "report", str(run_dir))
    assert r.returncode == 0, r.stderr
    assert "utilisation" in r.stdout and "coherence" in r.stdout
    assert (run_dir / "code_usage.png").read_bytes()[:4] == b"\x89PNG" and (run_dir / "prefix_sizes.png").exists()
    # errors: one red line naming the fix, exit code 2 (through the real entry point)
    r = subprocess.run([sys.executable, "-m", "semrec", "ids", "fit", str(tmp_path / "text.safetensors"),
                        "--method", "nope", "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown --method 'nope'" in r.stderr
