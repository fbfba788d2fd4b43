"""Schema fuzzing of every endpoint (schemathesis, from the app's own OpenAPI document): generated valid and invalid
requests must never get a 5xx. Runs in-process against the ASGI app of a small SASRec run; bounded examples."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from semrec.serving import Engine, create_app  # noqa: E402

KEY = "fuzz-key"
pytestmark = pytest.mark.slow  # 25-60 s: 25 generated valid and 25 invalid requests per operation


@pytest.fixture(scope="module")
def app(serving_sasrec, tmp_path_factory):
    _, _, run = serving_sasrec
    return create_app(Engine.from_run(run, state_dir=tmp_path_factory.mktemp("fuzz-state")), api_key=KEY)


def test_every_endpoint_answers_generated_requests_without_5xx(app):
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable

    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checked = []
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            seen: list[int] = []

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def check(case) -> None:
                writes = case.method in ("POST", "DELETE") and case.path.startswith("/items")
                response = case.call(headers={"X-API-Key": KEY} if writes else None)
                seen.append(response.status_code)
                assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])

            try:
                check()
            except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
                assert mode == GenerationMode.NEGATIVE
            checked.append((op.method.upper(), op.path, mode.value, len(seen)))
    paths = {(m, p) for m, p, _, _ in checked}
    assert {("POST", "/recommend"), ("POST", "/recommend/batch"), ("POST", "/items"), ("DELETE", "/items/{item_id}"),
            ("GET", "/items/{item_id}/similar"), ("POST", "/users/embed"), ("GET", "/metrics")} <= paths
    assert all(n > 0 for _, _, mode, n in checked if mode == "positive")
    assert sum(n for _, _, mode, n in checked if mode == "negative") > 100
