"""Bad input, table-driven: every case runs the real `semrec` entry point and must end in one clear line.

Each case asserts: a non-zero exit code, a message naming the file or option (and the fix where there is one),
no traceback, and that nothing under the work folder changed: no output appeared, no user file was touched,
no temporary was left behind.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from semrec.cli import main
from semrec.data import SyntheticConfig, synthetic_dataset


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    """(exit code, stderr + stdout) of `semrec ARGV` run in-process through the real entry point."""
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    cap = capsys.readouterr()
    return code, cap.err + cap.out


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under `root` (hidden ones too) with a hash of its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small world built through the CLI itself: two datasets, a run, CF vectors and a semantic-ID folder."""
    root = tmp_path_factory.mktemp("world")
    synthetic_dataset(SyntheticConfig(n_users=150, n_items=60, n_brands=6, seed=0)).save(root / "ds")
    synthetic_dataset(SyntheticConfig(n_users=150, n_items=70, n_brands=6, seed=1)).save(root / "other_ds")
    code = main_ok(["train", "mostpop", "--data", root / "ds", "--out", root / "run"])
    code += main_ok(["train", "mostpop", "--data", root / "other_ds", "--out", root / "other_run"])
    code += main_ok(["embed", root / "ds", "--source", "cf", "--from", "sppmi", "--dim", "8",
                     "--out", root / "cf.safetensors"])
    code += main_ok(["embed", root / "other_ds", "--source", "cf", "--from", "sppmi", "--dim", "8",
                     "--out", root / "other_cf.safetensors"])
    code += main_ok(["ids", "fit", root / "cf.safetensors", "--levels", "2", "--codebook-size", "4",
                     "--out", root / "ids"])
    assert code == 0
    (root / "user").mkdir()
    (root / "user" / "notes.txt").write_text("precious user notes\n")
    (root / "user_file.txt").write_text("a user's file\n")
    return root


def main_ok(argv: list) -> int:
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


@dataclass
class Case:
    name: str
    argv: Callable[[Path, Path], list]  # (world, scratch) -> argv; scratch is a per-case copy area
    expect: tuple[str, ...]  # substrings the message must contain (file/option names, the fix)
    setup: Callable[[Path, Path], None] | None = None  # writes the bad input into scratch


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _copy_with(src: Path, dst: Path, rel: str, content: bytes | None) -> None:
    """A copy of folder `src` at `dst` with file `rel` replaced by `content` (or removed when None)."""
    _copy(src, dst)
    (dst / rel).unlink() if content is None else (dst / rel).write_bytes(content)


def _dataset_with(world: Path, scratch: Path, name: str, content: bytes | None) -> None:
    _copy_with(world / "ds", scratch / "ds", name, content)


def _run_with(world: Path, scratch: Path, rel: str, content: bytes | None) -> None:
    _copy_with(world / "run", scratch / "run", rel, content)


def _truncate(path: Path, keep: float = 0.5) -> bytes:
    data = path.read_bytes()
    return data[: int(len(data) * keep)]


def _train(*extra: str) -> Callable[[Path, Path], list]:
    return lambda w, s: ["train", "sasrec", "--data", w / "ds", "--out", s / "out", *extra]


CASES = [
    # ---- 1. outputs never destroy anything
    Case("import into a foreign folder", lambda w, s: ["data", "import", "s3rec", s / "seq.txt", "--out", w / "user"],
         ("user", "not a semrec folder", "choose another --out"),
         lambda w, s: (s / "seq.txt").write_text("u1 1 2 3\n")),
    Case("import onto a plain file", lambda w, s: ["data", "import", "s3rec", s / "seq.txt", "--out",
                                                   w / "user_file.txt"],
         ("user_file.txt", "is a file"), lambda w, s: (s / "seq.txt").write_text("u1 1 2 3\n")),
    Case("import over a dataset without --overwrite", lambda w, s: ["data", "import", "s3rec", s / "seq.txt",
                                                                    "--out", w / "ds"],
         ("ds", "--overwrite"), lambda w, s: (s / "seq.txt").write_text("u1 1 2 3\n")),
    Case("split into a dataset folder", lambda w, s: ["data", "split", w / "ds", "--out", w / "ds", "--overwrite"],
         ("ds", "dataset folder, not a split folder")),
    Case("train into a foreign folder", lambda w, s: ["train", "mostpop", "--data", w / "ds", "--out", w / "user"],
         ("user", "not a semrec folder")),
    Case("train over a run without --overwrite", lambda w, s: ["train", "mostpop", "--data", w / "ds",
                                                               "--out", w / "run"],
         ("run", "--overwrite")),
    Case("train --overwrite onto a dataset", lambda w, s: ["train", "mostpop", "--data", w / "ds", "--out", w / "ds",
                                                           "--overwrite"],
         ("ds", "dataset folder, not a run folder")),
    Case("embed onto a user file", lambda w, s: ["embed", w / "ds", "--source", "cf", "--from", "sppmi",
                                                 "--out", w / "user_file.txt", "--overwrite"],
         ("user_file.txt", "not a semrec vectors file")),
    Case("ids fit into a foreign folder", lambda w, s: ["ids", "fit", w / "cf.safetensors", "--out", w / "user"],
         ("user", "not a semrec folder")),
    Case("ids encode onto a user file", lambda w, s: ["ids", "encode", w / "ids", w / "cf.safetensors",
                                                      "--out", w / "user_file.txt"],
         ("user_file.txt", ".parquet")),
    Case("evaluate over other cut-offs", lambda w, s: ["evaluate", w / "run", "--ks", "3", "--no-breakdown"],
         ("eval/test", "cut-offs [5, 10, 20]", "--overwrite")),
    # ---- 2. every option validated before work
    Case("--set of the wrong type", _train("--set", "epochs=abc"), ("'epochs'", "expected int", "'abc'")),
    Case("--set unknown key", _train("--set", "hiden=32"), ("'hiden'", "known:", "hidden")),
    Case("--set dropout out of range", _train("--set", "dropout=1.5"), ("'dropout'", "[0, 1)")),
    Case("--set negative size", _train("--set", "hidden=-4"), ("'hidden'", ">= 0")),
    Case("--set non-integer size", _train("--set", "n_layers=1.5"), ("'n_layers'", "expected int")),
    Case("--set brackets survive in the message", _train("--set", "loss=[1.0]"), ("'loss'", "[1.0]")),
    Case("--set without =", _train("--set", "epochs"), ("--set", "key=value")),
    Case("--threads 0", _train("--threads", "0"), ("--threads", "greater than or equal to 1")),
    Case("--ks 0", _train("--ks", "0,10"), ("--ks", ">= 1")),
    Case("--ks not numbers", _train("--ks", "a,b"), ("--ks", "comma-separated")),
    Case("--device without a GPU", _train("--device", "cuda"), ("--device cuda", "--device cpu")),
    Case("--device garbage", _train("--device", "banana"), ("--device", "banana")),
    Case("unknown split kind", _train("--split-kind", "sideways"), ("--split-kind", "sideways")),
    Case("--split-option out of range", _train("--split-kind", "cold-start", "--split-option", "fraction=2"),
         ("fraction=2", "[0, 1)")),
    Case("binary --config", _train("--config", "<scratch>/cfg.bin"), ("cfg.bin", "binary"),
         lambda w, s: (s / "cfg.bin").write_bytes(bytes(range(256)) * 4)),
    Case("--config not a mapping", _train("--config", "<scratch>/cfg.yaml"), ("cfg.yaml", "mapping"),
         lambda w, s: (s / "cfg.yaml").write_text("- 1\n- 2\n")),
    Case("--config bad YAML", _train("--config", "<scratch>/cfg.yaml"), ("cfg.yaml", "line"),
         lambda w, s: (s / "cfg.yaml").write_text("epochs: 3\n  x: [\n")),
    Case("--config unknown key", _train("--config", "<scratch>/cfg.json"), ("'epochz'", "known:"),
         lambda w, s: (s / "cfg.json").write_text('{"epochz": 3}')),
    Case("unknown model", lambda w, s: ["train", "nope", "--data", w / "ds", "--out", s / "out"],
         ("unknown model 'nope'", "available")),
    Case("generative model without codes", lambda w, s: ["train", "tiger", "--data", w / "ds", "--out", s / "out"],
         ("tiger", "--set codes_path=DIR")),
    Case("unknown CLI option", lambda w, s: ["train", "mostpop", "--data", w / "ds", "--out", s / "out", "--bogus"],
         ("Usage:", "--bogus")),
    Case("reader option unknown", lambda w, s: ["data", "import", "s3rec", s / "seq.txt", "--out", s / "o",
                                                "-o", "colour=red"],
         ("'colour'", "allowed options"), lambda w, s: (s / "seq.txt").write_text("u1 1 2 3\n")),
    Case("reader option wrong type", lambda w, s: ["data", "import", "s3rec", s / "seq.txt", "--out", s / "o",
                                                   "-o", "text_key_offset=abc"],
         ("'text_key_offset'", "integer"), lambda w, s: (s / "seq.txt").write_text("u1 1 2 3\n")),
    Case("negative k-core", lambda w, s: ["data", "import", "s3rec", s / "seq.txt", "--out", s / "o",
                                          "--user-k", "-1"],
         ("--user-k", "greater than or equal to 0"), lambda w, s: (s / "seq.txt").write_text("u1 1 2 3\n")),
    Case("unknown --duplicates", lambda w, s: ["data", "import", "s3rec", s / "seq.txt", "--out", s / "o",
                                               "--duplicates", "keep-some"],
         ("--duplicates", "keep-some"), lambda w, s: (s / "seq.txt").write_text("u1 1 2 3\n")),
    Case("unknown format", lambda w, s: ["data", "import", "csvx", w / "user_file.txt", "--out", s / "o"],
         ("csvx", "s3rec")),
    Case("split option unknown", lambda w, s: ["data", "split", w / "ds", "--out", s / "sp", "-o", "ratio=1"],
         ("'ratio'", "allowed")),
    Case("ids fit --levels 0", lambda w, s: ["ids", "fit", w / "cf.safetensors", "--out", s / "ids", "--levels", "0"],
         ("--levels", "greater than or equal to 1")),
    Case("ids fit --codebook-size 1", lambda w, s: ["ids", "fit", w / "cf.safetensors", "--out", s / "ids",
                                                    "--codebook-size", "1"], ("--codebook-size", "greater than or equal to 2")),
    Case("ids fit weights count", lambda w, s: ["ids", "fit", w / "cf.safetensors", w / "cf.safetensors",
                                                "--weights", "1", "--out", s / "ids"], ("--weights", "2")),
    Case("ids fit unknown --collisions", lambda w, s: ["ids", "fit", w / "cf.safetensors", "--out", s / "ids",
                                                       "--collisions", "merge"], ("--collisions", "merge")),
    Case("compare --n-boot 0", lambda w, s: ["compare", w / "run", w / "run", "--n-boot", "0"], ("--n-boot",)),
    Case("compare unknown metric", lambda w, s: ["compare", w / "run", w / "run", "--metric", "precision@10"],
         ("precision@10", "recall@K")),
    Case("recommend -k 0", lambda w, s: ["recommend", w / "run", "--history", "x", "-k", "0"], ("-k", "greater than or equal to 1")),
    Case("recommend empty history", lambda w, s: ["recommend", w / "run", "--history", " , "],
         ("history is empty", "--history")),
    Case("recommend unknown item", lambda w, s: ["recommend", w / "run", "--history", "no-such-item"],
         ("no-such-item", "item_id")),
    Case("recommend without a history", lambda w, s: ["recommend", w / "run"], ("--history", "--input")),
    Case("embed needs --from", lambda w, s: ["embed", w / "ds", "--source", "cf", "--out", s / "v.safetensors"],
         ("--source cf", "--from")),
    Case("embed unknown field", lambda w, s: ["embed", w / "ds", "--fields", "colour", "--out", s / "v.safetensors"],
         ("--fields", "colour", "available")),
    Case("--set a whole option group", _train("--set", "train=5"), ("'train' is a group", "train.")),
    Case("--set train.device without a GPU", _train("--set", "train.device=cuda"), ("cuda", "--device cpu")),
    Case("itemknn window 0", lambda w, s: ["train", "itemknn", "--data", w / "ds", "--out", s / "o",
                                           "--set", "window=0"], ("'window'", ">= 1")),
    Case("split missing required options", lambda w, s: ["data", "split", w / "ds", "--out", s / "sp", "--kind",
                                                         "temporal"], ("temporal", "valid_time=")),
    Case("--split that is not a split", lambda w, s: ["train", "mostpop", "--data", w / "ds", "--split", w / "ds",
                                                      "--out", s / "o"], ("ds", "not a split folder")),
    Case("--cache that is a file", lambda w, s: ["embed", w / "ds", "--cache", w / "user_file.txt",
                                                 "--out", s / "v.safetensors"], ("--cache", "is a file")),
    # ---- 3. corrupt, missing or mismatched files
    Case("truncated items.parquet", lambda w, s: ["data", "inspect", s / "ds"], ("items.parquet",),
         lambda w, s: _dataset_with(w, s, "items.parquet", _truncate(w / "ds" / "items.parquet"))),
    Case("random bytes as interactions.parquet", lambda w, s: ["data", "inspect", s / "ds"],
         ("interactions.parquet", "not a Parquet file"),
         lambda w, s: _dataset_with(w, s, "interactions.parquet", np.random.default_rng(0).bytes(500))),
    Case("pickle as users.parquet", lambda w, s: ["data", "inspect", s / "ds"], ("users.parquet", "not a Parquet"),
         lambda w, s: _dataset_with(w, s, "users.parquet", pickle.dumps({"a": 1}))),
    Case("missing users table", lambda w, s: ["data", "inspect", s / "ds"], ("users.parquet", "not found"),
         lambda w, s: _dataset_with(w, s, "users.parquet", None)),
    Case("manifest of the wrong shape", lambda w, s: ["data", "inspect", s / "ds"], ("manifest.json", "expected a JSON object"),
         lambda w, s: _dataset_with(w, s, "manifest.json", b"[1, 2, 3]")),
    Case("items table of the wrong schema", lambda w, s: ["data", "inspect", s / "ds"], ("items.parquet", "item_id"),
         lambda w, s: _dataset_with(w, s, "items.parquet", _parquet_bytes({"item_idx": [0, 1], "name": ["a", "b"]}))),
    Case("truncated model.safetensors", lambda w, s: ["evaluate", s / "run", "--overwrite"],
         ("model.safetensors", "safetensors"),
         lambda w, s: _run_with(w, s, "model/model.safetensors", _truncate(w / "run" / "model" / "model.safetensors"))),
    Case("missing model.safetensors", lambda w, s: ["evaluate", s / "run", "--overwrite"],
         ("model.safetensors", "not found"), lambda w, s: _run_with(w, s, "model/model.safetensors", None)),
    Case("foreign model.safetensors", lambda w, s: ["evaluate", s / "run", "--overwrite"],
         ("model.safetensors", "another model or dataset"),
         lambda w, s: _run_with(w, s, "model/model.safetensors",
                                (w / "other_run" / "model" / "model.safetensors").read_bytes())),
    Case("truncated split.npz", lambda w, s: ["evaluate", s / "run", "--overwrite"], ("split.npz",),
         lambda w, s: _run_with(w, s, "split/split.npz", _truncate(w / "run" / "split" / "split.npz"))),
    Case("model config.json of the wrong shape", lambda w, s: ["evaluate", s / "run", "--overwrite"],
         ("config.json", "'model'"), lambda w, s: _run_with(w, s, "model/config.json", b'{"model": 3}')),
    Case("corrupt tokenizer weights", lambda w, s: ["ids", "report", s / "ids"], ("tokenizer.safetensors",),
         lambda w, s: (_copy(w / "ids", s / "ids") / "tokenizer.safetensors").write_bytes(b"\x00" * 64)),
    Case("ragged precomputed vectors", lambda w, s: ["embed", w / "ds", "--source", "precomputed", "--from",
                                                     s / "v.npy", "--out", s / "o.safetensors"],
         ("v.npy",), lambda w, s: np.save(s / "v.npy", np.ones((3, 4), np.float32))),
    Case("vectors of another width", lambda w, s: ["ids", "encode", w / "ids", s / "v.npy", "--out", s / "c.parquet"],
         ("fitted on 8-d vectors",), lambda w, s: np.save(s / "v.npy", np.ones((5, 3), np.float32))),
    Case("gzip that is not gzip", lambda w, s: ["data", "import", "s3rec", s / "seq.txt.gz", "--out", s / "o"],
         ("seq.txt.gz", "gzip"), lambda w, s: (s / "seq.txt.gz").write_bytes(b"\x1f\x8b" + b"not really" * 10)),
    Case("pickled item text", lambda w, s: ["data", "import", "s3rec", s / "seq.txt", "--out", s / "o",
                                            "-o", f"item_text={s / 'items.json'}"],
         ("items.json",), lambda w, s: ((s / "seq.txt").write_text("u1 1 2 3\n"),
                                        (s / "items.json").write_bytes(pickle.dumps({"1": "x"})))),
    Case("file with no interaction", lambda w, s: ["data", "import", "s3rec", s / "seq.txt", "--out", s / "o"],
         ("seq.txt",), lambda w, s: (s / "seq.txt").write_text("\n\n   \n")),
    Case("non-integer item id", lambda w, s: ["data", "import", "s3rec", s / "seq.txt", "--out", s / "o"],
         ("seq.txt", "line 2"), lambda w, s: (s / "seq.txt").write_text("u1 1 2 3\nu2 4 five 6\n")),
    # ---- 4. things that must match
    Case("recommend with another dataset", lambda w, s: ["recommend", w / "run", "--data", w / "other_ds",
                                                         "--history", "x"],
         ("fingerprint", "--data")),
    Case("cf vectors from a run on another dataset", lambda w, s: ["embed", w / "ds", "--source", "cf", "--from",
                                                                   w / "other_run", "--out", s / "o.safetensors"],
         ("other_run", "another dataset")),
    Case("vectors of another dataset", lambda w, s: ["ids", "fit", w / "other_cf.safetensors", "--dataset", w / "ds",
                                                     "--out", s / "ids"],
         ("other_cf.safetensors", "another dataset")),
    Case("interrupted run", lambda w, s: ["evaluate", s / "run"], ("interrupted", "--resume"),
         lambda w, s: _copy(w / "run", s / ".run.partial")),
]


def _parquet_bytes(columns: dict) -> bytes:
    import io

    import polars as pl

    buf = io.BytesIO()
    pl.DataFrame(columns).write_parquet(buf)
    return buf.getvalue()


def test_there_are_enough_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_clear_line(case: Case, world: Path, tmp_path: Path, capsys, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.chdir(tmp_path)  # relative defaults (e.g. the text cache) land in the case's own folder
    if case.setup is not None:
        case.setup(world, scratch)
    argv = [str(a).replace("<scratch>", str(scratch)) for a in case.argv(world, scratch)]
    before_world, before_scratch = snapshot(world), snapshot(tmp_path)
    code, message = run_cli(capsys, *argv)
    assert code != 0, f"exit 0 on bad input: {message}"
    assert "Traceback" not in message and "internal error" not in message, message
    for part in case.expect:
        assert part in message, f"{part!r} not in: {message}"
    assert snapshot(world) == before_world, "a user file or an earlier output changed"
    assert snapshot(tmp_path) == before_scratch, "something was written (or a temporary left behind)"


def test_overwrite_replaces_only_the_same_kind(world: Path, tmp_path: Path, capsys):
    target = _copy(world / "ds", tmp_path / "ds")
    (tmp_path / "seq.txt").write_text("u1 1 2 3\nu2 2 3 4\n")
    code, msg = run_cli(capsys, "data", "import", "s3rec", tmp_path / "seq.txt", "--out", target, "--overwrite")
    assert code == 0, msg
    assert json.loads((target / "manifest.json").read_text())["counts"]["users"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_gzip_named_file_that_is_gzip_reads(tmp_path: Path, capsys):
    with gzip.open(tmp_path / "seq.txt.gz", "wt") as f:
        f.write("u1 1 2 3\nu2 2 3 4\n")
    code, msg = run_cli(capsys, "data", "import", "s3rec", tmp_path / "seq.txt.gz", "--out", tmp_path / "o")
    assert code == 0, msg


def test_debug_shows_the_traceback(world: Path, capsys):
    with pytest.raises(Exception, match="not a semrec folder"):
        main(["--debug", "train", "mostpop", "--data", str(world / "ds"), "--out", str(world / "user")])


def test_a_foreign_partial_folder_is_never_removed(world: Path, tmp_path: Path, capsys):
    own = tmp_path / ".out.partial"  # a user's folder that happens to have the name train stages in
    own.mkdir()
    (own / "keep.txt").write_text("mine\n")
    code, msg = run_cli(capsys, "train", "mostpop", "--data", world / "ds", "--out", tmp_path / "out")
    assert code == 2 and "not a semrec partial run" in msg and "Traceback" not in msg, msg
    assert (own / "keep.txt").read_text() == "mine\n" and not (tmp_path / "out").exists()
