import json

import pytest
from typer.testing import CliRunner

from semrec.cli import _register, app
from semrec.data import SyntheticConfig, synthetic_dataset
from semrec.errors import ConfigError, DataError
from semrec.evaluation import EvalResult
from semrec.training.run import build_model, read_config_file

_register()
runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "syn"
    synthetic_dataset(SyntheticConfig(n_users=400, n_items=200, seed=3)).save(path)
    return path


def _ok(result):
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_train_evaluate_compare_round_trip(data_dir, tmp_path):
    runs = tmp_path / "runs"
    _ok(runner.invoke(app, ["train", "mostpop", "--data", str(data_dir), "--out", str(runs / "pop")]))
    (tmp_path / "knn.yaml").write_text("window: 2\nhistory_items: 3\n")
    _ok(runner.invoke(app, ["train", "itemknn", "--data", str(data_dir), "--out", str(runs / "knn"),
                            "--config", str(tmp_path / "knn.yaml"), "--set", "history_decay=0.5"]))
    run = runs / "knn"
    for f in ("config.json", "dataset_manifest.json", "metrics.json", "train_log.jsonl", "model/config.json",
              "model/model.safetensors", "split/split.npz", "eval/test/ranks.npz", "eval/valid/result.json"):
        assert (run / f).exists(), f
    config = json.loads((run / "config.json").read_text())
    assert config["config"] == {**config["config"], "window": 2, "history_items": 3, "history_decay": 0.5}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["exclude_history"] is False and metrics["protocol"]["full_ranking"] is True
    assert set(metrics["test"]) >= {"recall@10", "ndcg@10", "mrr", "coverage@10"}
    assert EvalResult.load(run / "eval" / "test").metrics == metrics["test"]

    out = _ok(runner.invoke(app, ["evaluate", str(run), "--exclude-history"]))
    assert "95% CI" in out and "popularity" in out
    excl = EvalResult.load(run / "eval" / "test-exclude-history")
    assert excl.settings["exclude_history"] is True
    out = _ok(runner.invoke(app, ["compare", str(runs / "pop"), str(run)]))
    assert "N@10" in out and "p(t)" in out


def test_build_model_layers_config_sources_and_errors(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("window: 4\nneighbours: 10\n")
    m = build_model("itemknn", 50, cfg, ["neighbours=20"])
    assert (m.config.window, m.config.neighbours) == (4, 20)
    (tmp_path / "bad.yaml").write_text("window: 4\n  bad: [\n")
    with pytest.raises(DataError, match=r"bad.yaml.*line"):
        read_config_file(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="unknown option 'windw'"):
        build_model("itemknn", 50, overrides=["windw=3"])


def test_cli_errors_are_one_line(data_dir, tmp_path):
    res = runner.invoke(app, ["evaluate", str(tmp_path / "nope")])
    assert isinstance(res.exception, DataError) and "run folder not found" in str(res.exception)
    res = runner.invoke(app, ["train", "nope", "--data", str(data_dir), "--out", str(tmp_path / "r")])
    assert isinstance(res.exception, ConfigError) and "unknown model 'nope'" in str(res.exception)


def test_train_torch_model_writes_history_and_resumes(data_dir, tmp_path):
    import tests.tiny_model  # noqa: F401  registers tiny-bigram

    run = tmp_path / "tiny"
    args = ["train", "tiny-bigram", "--data", str(data_dir), "--out", str(run), "--set", "train.progress=false",
            "--threads", "1"]
    _ok(runner.invoke(app, [*args, "--set", "epochs=2"]))
    hist = json.loads((run / "history.json").read_text())
    assert hist["epochs"] == 2 and hist["resumed_from"] is None
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["timing"]["epoch_s"] > 0 and metrics["best_epoch"] in (1, 2)
    assert (run / "checkpoints" / "last" / "optimizer.safetensors").exists()
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["train"]["num_threads"] == 1
    _ok(runner.invoke(app, [*args, "--set", "epochs=3", "--resume"]))
    hist = json.loads((run / "history.json").read_text())
    assert hist["resumed_from"] == 2 and [r["epoch"] for r in hist["records"]] == [1, 2, 3]
    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    assert [x.get("epoch") for x in log if "loss" in x] == [1, 2, 3]
