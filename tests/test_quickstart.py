import pytest
from typer.testing import CliRunner

from semrec.cli import _register, app
from semrec.cli.quickstart import model_available, run_quickstart

_register()


def test_quickstart_cli_with_simple_baselines(tmp_path):
    res = CliRunner().invoke(app, ["quickstart", "--out", str(tmp_path / "qs"), "--model", "mostpop",
                                   "--model", "itemknn"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "test set" in res.output and "itemknn" in res.output and "history" in res.output
    assert "semrec serve" in res.output and "curl -s -X POST" in res.output  # how to serve the run, one request
    for name in ("mostpop", "itemknn"):
        assert (tmp_path / "qs" / "runs" / name / "metrics.json").exists()


@pytest.mark.slow
def test_sasrec_beats_mostpop_clearly_on_synthetic(tmp_path):
    if not model_available("sasrec"):
        pytest.skip("semrec.models.sasrec is not registered yet")
    _, _, results = run_quickstart(tmp_path / "qs", models=("mostpop", "sasrec"))
    pop, sas = results["mostpop"]["test"], results["sasrec"]["test"]
    # the synthetic users follow product routines that popularity cannot see
    assert sas["ndcg@10"] > 1.5 * pop["ndcg@10"]
    assert sas["recall@10"] > pop["recall@10"] + 0.03
