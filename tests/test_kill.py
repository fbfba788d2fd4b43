"""kill -9 at random moments never leaves a half-written output: `data import`, `ids fit` and `train` are each
killed 5 times (while writing a new output and while replacing an existing one with --overwrite); afterwards the
output is either absent or complete, an existing output is intact, and the next successful run leaves no
temporary behind."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from semrec.cli import main
from semrec.data import Dataset, SyntheticConfig, synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 5


def _ok(argv: list) -> None:
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        assert not e.code, f"semrec {' '.join(map(str, argv))} failed with {e.code}"


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _start(argv: list) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "semrec", *map(str, argv)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kill")
    ds = synthetic_dataset(SyntheticConfig(n_users=1500, n_items=800, seed=3))
    ds.save(root / "ds")
    seqs = ds.sequences()
    lines = [f"u{u} " + " ".join(map(str, seqs[u].tolist())) for u in range(len(seqs))]
    (root / "seq.txt").write_text("\n".join(lines) + "\n")
    _ok(["embed", root / "ds", "--source", "cf", "--from", "sppmi", "--dim", "32", "--out", root / "v.safetensors"])
    return root


COMMANDS = {
    "data import": (lambda r, out: ["data", "import", "s3rec", r / "seq.txt", "--out", out],
                    lambda out: Dataset.load(out).n_interactions > 0),
    "ids fit": (lambda r, out: ["ids", "fit", r / "v.safetensors", "--levels", "2", "--codebook-size", "16",
                                "--out", out],
                lambda out: (out / "codes.parquet").exists() and (out / "diagnostics.json").exists()),
    "train": (lambda r, out: ["train", "sasrec", "--data", r / "ds", "--out", out, "--threads", "1",
                              "--set", "epochs=2", "--set", "hidden=16", "--set", "train.progress=false"],
              lambda out: (out / "metrics.json").exists() and (out / "model" / "model.safetensors").exists()),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_kill9_never_leaves_a_half_written_output(name: str, inputs: Path, tmp_path: Path):
    argv_of, complete = COMMANDS[name]
    out = tmp_path / "out"
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    proc = _start(argv_of(inputs, out))
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-2000:]
    duration = time.perf_counter() - t0
    assert complete(out) and _leftovers(out) == []
    for trial in range(TRIALS):
        replacing = trial % 2 == 1  # odd trials kill a run that replaces an existing output
        if not replacing:
            subprocess.run(["rm", "-rf", str(out)], check=True)
        before = _digest(out) if replacing else None
        proc = _start([*argv_of(inputs, out), "--overwrite"])
        time.sleep(float(rng.uniform(0.3, 1.0)) * duration)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        if replacing:
            assert _digest(out) == before, f"trial {trial}: the existing output changed"
        else:
            assert not out.exists() or complete(out), f"trial {trial}: a half-written output is visible"
        _ok([*argv_of(inputs, out), "--overwrite"])
        assert complete(out), f"trial {trial}: the next run did not complete"
        assert _leftovers(out) == [], f"trial {trial}: temporaries left after the next run: {_leftovers(out)}"
        assert [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".semrec.json"] == []
