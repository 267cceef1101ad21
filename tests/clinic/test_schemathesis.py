"""Schemathesis against the clinic web app's served OpenAPI description (``/openapi.json``).

Cases for every operation (``GET /api/health``, ``POST /api/recommend`` with JSON and CSV bodies and the query
parameters) are generated from the spec the app serves, in both modes: positive (data the schema allows) and
negative (data it forbids). Each response must pass:

* ``not_a_server_error``: never a 5xx;
* ``status_code_conformance``: only documented status codes;
* ``content_type_conformance`` and ``response_schema_conformance``: the documented media type and body schema
  (the error body of ``ERROR_SCHEMA``; the recommendation's outline);
* ``negative_data_rejection``: data the schema forbids is refused with a 4xx.

``positive_data_acceptance`` is *not* checked: it is not meaningful here, because the history parser checks
more than a JSON schema can say (dates strictly increasing, at most 5 sessions a week, no reports for a session
that was not attended, intake query parameters only with CSV bodies, a CSV body must be a sessions CSV), so most
schema-valid bodies are rightly answered 422.

Runs are derandomized hypothesis runs of :data:`N_POSITIVE` / :data:`N_NEGATIVE` cases (a positive case can be a
valid history, which runs a fit: the app uses 100 particles and a 4-week horizon to keep that cheap). Counts go
to :data:`COUNTS` and one summary line per test is printed (``pytest -s``).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")

from fastapi.testclient import TestClient  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from adaptrx.clinic.web import create_app  # noqa: E402

pytestmark = pytest.mark.slow  # seconds each: a browser, a server or thousands of generated inputs

#: Cases per generation mode.
N_POSITIVE = 60
N_NEGATIVE = 120
#: Cases each test executed (``pytest -s`` prints them).
COUNTS: dict[str, int] = {}

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(n_particles=100, horizon=4)


@pytest.mark.parametrize(("mode", "n"), [(GenerationMode.POSITIVE, N_POSITIVE), (GenerationMode.NEGATIVE, N_NEGATIVE)],
                         ids=["positive", "negative"])
def test_schemathesis_openapi(app: Any, mode: GenerationMode, n: int) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    assert {op.ok().path for op in schema.get_all_operations()} == {"/api/health", "/api/recommend"}
    statuses: Counter[int] = Counter()
    seen = {"cases": 0}
    operations: Counter[str] = Counter()

    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(case=schema.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        seen["cases"] += 1
        operations[f"{case.method} {case.path} {case.media_type or ''}".strip()] += 1
        response = case.call()
        statuses[response.status_code] += 1
        assert "Traceback" not in response.text
        case.validate_response(response, checks=CHECKS)

    run()
    name = f"schemathesis_{mode.value}"
    COUNTS[name] = seen["cases"]
    print(f"\n[fuzz] {name}: {seen['cases']} cases (status {dict(sorted(statuses.items()))}; "
          f"{dict(operations)})")
    assert seen["cases"] >= n, f"only {seen['cases']} cases ran, expected {n}"
    assert operations[f"POST /api/recommend {'application/json'}"] >= n // 10
    assert operations["POST /api/recommend text/csv"] >= n // 10
    assert statuses[422] >= n // 4  # the fuzzing did reach the history validation
    # the server still serves
    with TestClient(app) as client:
        assert client.get("/api/health").json()["status"] == "ok"
        doc = {"patient": {"condition": "knee_oa", "age": 61, "baseline_pain": 6},
               "sessions": [{"date": "2026-01-06", "load": 0.3, "attended": True, "pain_during": 4},
                            {"date": "2026-01-08", "load": 0.3, "attended": False}]}
        r = client.post("/api/recommend", content=json.dumps(doc), params={"plot": "false"},
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
