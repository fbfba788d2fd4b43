"""Shared fixtures: paths to ../shared/data (tests that need it skip cleanly when it is absent, and fail instead
under SEMREC_REQUIRE_DATA=1, as CI runs them, so a missing data folder can never pass CI silently)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_required() -> bool:
    return os.environ.get("SEMREC_REQUIRE_DATA", "") not in ("", "0")


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test when it is not there (fail under SEMREC_REQUIRE_DATA=1)."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        if data_required():
            pytest.fail(f"{p} not present, and SEMREC_REQUIRE_DATA=1 says the real-data tests must run")
        pytest.skip(f"{p} not present (../shared/data is only beside the project checkout and in CI)")
    return p


@pytest.fixture(scope="session")
def synthetic():
    from semrec.data import synthetic_dataset

    return synthetic_dataset()


@pytest.fixture
def one_torch_thread():
    """Small tensors: one thread is faster and immune to CPU contention from parallel test runs."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def serving_sasrec(tmp_path_factory):
    """(root, dataset, run folder) of a small SASRec run the serving tests share (each test keeps its own state)."""
    import torch

    from tests import serving_runs

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("serving-sasrec")
    ds = serving_runs.build_dataset(root)
    return root, ds, serving_runs.build_sasrec(root, ds)
