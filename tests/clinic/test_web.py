"""The clinic web app (``adaptrx.clinic.web``): the JSON API, its errors, its schema and its page."""

from __future__ import annotations

import base64
import csv
import io
import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adaptrx.clinic import evidence, web
from adaptrx.clinic.history import HISTORY_JSON_SCHEMA, MAX_BYTES, SESSION_COLUMNS
from adaptrx.clinic.web import SECURITY_HEADERS, create_app

FAST = {"n_particles": 500, "horizon": 4}
PLANS = ("recommended", "hold", "pain_monitoring")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(**FAST)) as c:
        yield c


def _csv(document: dict[str, Any], intake_comments: bool = False, drop: tuple[str, ...] = ()) -> str:
    """The document's sessions as a CSV (intake as ``# field: value`` lines when ``intake_comments``)."""
    out = io.StringIO()
    if intake_comments:
        for key, value in document["patient"].items():
            out.write(f"# {key}: {value}\n")
    columns = [c for c in SESSION_COLUMNS if c not in drop and any(c in s for s in document["sessions"])]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for s in document["sessions"]:
        writer.writerow(["" if s.get(c) is None else str(s[c]).lower() if isinstance(s.get(c), bool) else s[c]
                         for c in columns])
    return out.getvalue()


def _post_json(client: TestClient, document: Any, **params: Any) -> Any:
    return client.post("/api/recommend", content=json.dumps(document), params=params,
                       headers={"Content-Type": "application/json"})


def _post_csv(client: TestClient, text: str | bytes, **params: Any) -> Any:
    return client.post("/api/recommend", content=text, params=params, headers={"Content-Type": "text/csv"})


def _check_recommendation(d: dict[str, Any], horizon: int) -> None:
    assert d["policy"]["id"] == "dagger-knee_oa-v0" and d["policy"]["kind"] == "trained"
    assert len(d["policy"]["manifest_sha256"]) == 64
    rx = d["prescription"]
    assert 1 <= rx["sessions"] <= 5 and 0.0 <= rx["load"] <= 1.5
    assert rx["delivery"] in ("home", "remote", "supervised")
    assert isinstance(d["safety"]["bound_by"], list) and d["safety"]["summary"]
    assert d["forecast"]["weeks"] == list(range(d["patient"]["next_week"], d["patient"]["next_week"] + horizon))
    assert set(PLANS) <= set(d["forecast"]["plans"])
    for name in PLANS:
        plan = d["forecast"]["plans"][name]
        for lo, mid, hi in zip(plan["pain_q10"], plan["pain_median"], plan["pain_q90"], strict=True):
            assert 0.0 <= lo <= mid <= hi <= 10.0, (name, lo, mid, hi)
        assert 0.0 <= plan["flare_probability"] <= 1.0 and 0.0 <= plan["dropout_probability"] <= 1.0
    assert d["fit"]["particles"] == FAST["n_particles"]


def _problem(response: Any, status: int = 422) -> list[dict[str, Any]]:
    """The error body's detail list, after checking the status and the JSON error layout."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in response.text
    for item in body["detail"]:
        assert set(item) == {"field", "message", "row"}
    return body["detail"]


def _has(detail: list[dict[str, Any]], field: str, row: int | None = None) -> bool:
    return any(d["field"] == field and (row is None or d["row"] == row) for d in detail)


# ------------------------------------------------------------------------------------------------ happy paths
def test_health(client: TestClient) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    # the default: per condition, the best-evidenced policy of the shipped trials
    assert body["policy"]["id"] == "default" and body["policy"]["kind"] == "default"
    assert body["policy"]["defaults"] == {c: e["policy"] for c, e in evidence.load().items()}
    assert body["policy"]["defaults"]["knee_oa"] == "dagger-knee_oa-v0"


def test_json_history_gives_a_prescription_with_forecast_bands(client: TestClient, document: dict[str, Any]) -> None:
    r = _post_json(client, document)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    d = r.json()
    _check_recommendation(d, FAST["horizon"])
    assert d["patient"]["patient_id"] == document["patient"]["patient_id"]
    assert d["patient"]["weeks_of_history"] == 8 and d["patient"]["next_week"] == 9
    assert base64.b64decode(d["plot_png_base64"]).startswith(b"\x89PNG\r\n\x1a\n")
    for name, value in SECURITY_HEADERS.items():
        assert r.headers[name] == value


def test_horizon_and_plot_query_parameters(client: TestClient, document: dict[str, Any]) -> None:
    r = _post_json(client, document, horizon=6, plot="false")
    assert r.status_code == 200, r.text
    d = r.json()
    assert "plot_png_base64" not in d
    _check_recommendation(d, 6)


def test_csv_history_with_query_intake(client: TestClient, document: dict[str, Any]) -> None:
    intake = document["patient"]
    r = _post_csv(client, _csv(document), condition=intake["condition"], age=str(intake["age"]),
                  baseline_pain=str(intake["baseline_pain"]))
    assert r.status_code == 200, r.text
    d = r.json()
    _check_recommendation(d, FAST["horizon"])
    assert d["patient"]["patient_id"] is None and d["history"]["weeks"] == list(range(1, 9))


def test_csv_history_with_intake_comment_lines(client: TestClient, document: dict[str, Any]) -> None:
    r = client.post("/api/recommend", content=_csv(document, intake_comments=True).encode(),
                    headers={"Content-Type": "text/csv; charset=utf-8"})
    assert r.status_code == 200, r.text
    assert r.json()["patient"]["patient_id"] == document["patient"]["patient_id"]


def test_page_and_static_files(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<form id="history-form"' in r.text and "/static/app.js" in r.text
    assert "http://" not in r.text and "https://" not in r.text  # no external resources
    assert "nosniff" in r.headers["x-content-type-options"]
    assert "default-src 'self'" in r.headers["content-security-policy"]
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "innerHTML" not in js.text.replace("never innerHTML", "")
    css = client.get("/static/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    missing = client.get("/static/../web.py")
    assert missing.status_code == 404 and missing.json()["error"]


# ------------------------------------------------------------------------------------------------ bad input
def _pain_out_of_range(doc: dict[str, Any]) -> None:
    doc["sessions"][2].update(attended=True, pain_during=11)


def _dates_out_of_order(doc: dict[str, Any]) -> None:
    s = doc["sessions"]
    s[3]["date"], s[4]["date"] = s[4]["date"], s[3]["date"]


def _unknown_condition(doc: dict[str, Any]) -> None:
    doc["patient"]["condition"] = "gout"


def _empty_sessions(doc: dict[str, Any]) -> None:
    doc["sessions"] = []


def _age_not_a_number(doc: dict[str, Any]) -> None:
    doc["patient"]["age"] = "old"


def _missing_required_field(doc: dict[str, Any]) -> None:
    del doc["sessions"][1]["load"]


@pytest.mark.parametrize(("mutate", "field", "row"), [
    (_pain_out_of_range, "sessions.pain_during", 3),
    (_dates_out_of_order, "sessions.date", 5),
    (_unknown_condition, "patient.condition", None),
    (_empty_sessions, "sessions", None),
    (_age_not_a_number, "patient.age", None),
    (_missing_required_field, "sessions.load", 2),
])
def test_bad_json_history_is_422_naming_field_and_row(client: TestClient, document: dict[str, Any], mutate: Any,
                                                      field: str, row: int | None) -> None:
    mutate(document)
    detail = _problem(_post_json(client, document))
    assert _has(detail, field, row), detail


def test_bad_csv_history_is_422_naming_field_and_row(client: TestClient, document: dict[str, Any]) -> None:
    intake = {k: document["patient"][k] for k in ("condition", "age", "baseline_pain")}
    _pain_out_of_range(document)
    detail = _problem(_post_csv(client, _csv(document), **intake))
    assert _has(detail, "sessions.pain_during", 3), detail
    document["sessions"][2]["pain_during"] = 5
    detail = _problem(_post_csv(client, _csv(document, drop=("load",)), **intake))
    assert _has(detail, "sessions.load"), detail
    detail = _problem(_post_csv(client, _csv(document), condition="gout", age="old", baseline_pain="5"))
    assert _has(detail, "patient.condition") and _has(detail, "patient.age"), detail
    detail = _problem(_post_csv(client, "date,load,attended\n", **intake))
    assert _has(detail, "sessions"), detail


@pytest.mark.parametrize("content_type", ["application/json", "text/csv"])
def test_random_bytes_are_422(client: TestClient, content_type: str) -> None:
    data = random.Random(0).randbytes(4096)
    detail = _problem(client.post("/api/recommend", content=data, headers={"Content-Type": content_type}))
    assert _has(detail, "history"), detail


@pytest.mark.parametrize("body", [b"", b"{", b"[1, 2]", b'{"patient": {}, "sessions": [], "patient": {}}',
                                  b'{"patient": NaN}', b"\xef\xbb\xbf" + b"not json at all"])
def test_malformed_json_is_422(client: TestClient, body: bytes) -> None:
    detail = _problem(client.post("/api/recommend", content=body, headers={"Content-Type": "application/json"}))
    assert detail and detail[0]["field"] in ("history", "sessions", "patient")


@pytest.mark.parametrize(("params", "field"), [
    ({"horizon": "3"}, "horizon"),
    ({"horizon": "13"}, "horizon"),
    ({"horizon": "twelve"}, "horizon"),
    ({"plot": "maybe"}, "plot"),
    ({"baseline-pain": "5"}, "query.baseline-pain"),
    ({"age": "60"}, "patient.age"),  # intake query parameters are for CSV histories
])
def test_bad_query_parameters_are_422(client: TestClient, document: dict[str, Any], params: dict[str, str],
                                      field: str) -> None:
    detail = _problem(_post_json(client, document, **params))
    assert _has(detail, field), detail


def test_repeated_query_parameter_is_422(client: TestClient, document: dict[str, Any]) -> None:
    r = client.post("/api/recommend?horizon=4&horizon=5", content=json.dumps(document),
                    headers={"Content-Type": "application/json"})
    assert _has(_problem(r), "query.horizon")


def test_oversized_body_is_413(client: TestClient) -> None:
    big = b"{" + b" " * MAX_BYTES + b"}"
    detail = _problem(client.post("/api/recommend", content=big, headers={"Content-Type": "application/json"}), 413)
    assert _has(detail, "history")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(MAX_BYTES // 65536 + 2):
            yield b" " * 65536

    r = client.post("/api/recommend", content=chunks(), headers={"Content-Type": "text/csv"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert _has(_problem(r, 413), "history")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/json; charset=latin-1"])
def test_wrong_content_type_is_415(client: TestClient, document: dict[str, Any], content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post("/api/recommend", content=json.dumps(document).encode(), headers=headers)
    if content_type is None:
        assert "content-type" not in {k.lower() for k in r.request.headers}
    assert _has(_problem(r, 415), "content-type")


def test_internal_error_is_500_json_without_traceback(client: TestClient, document: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(web, "recommend", broken)
    r = _post_json(client, document)
    assert r.status_code == 500 and r.json()["error"]
    assert "secret" not in r.text and "Traceback" not in r.text


def test_server_still_answers_after_bad_requests(client: TestClient, document: dict[str, Any]) -> None:
    for body, ctype in ((b"\x00\xff" * 100, "text/csv"), (b"{", "application/json"), (b"x", "text/plain"),
                        (b" " * (MAX_BYTES + 1), "text/csv")):
        assert 400 <= client.post("/api/recommend", content=body, headers={"Content-Type": ctype}).status_code < 500
    assert client.get("/api/health").json()["status"] == "ok"
    r = _post_json(client, document, plot="false")
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------------------------------------ schema, app
def test_openapi_documents_the_history_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/api/recommend"]["post"]
    content = op["requestBody"]["content"]
    assert content["application/json"]["schema"] == HISTORY_JSON_SCHEMA
    assert content["text/csv"]["schema"]["type"] == "string"
    names = {p["name"] for p in op["parameters"]}
    assert {"horizon", "plot", "condition", "age", "baseline_pain"} <= names
    assert {"200", "413", "415", "422"} <= set(op["responses"])
    assert "/api/health" in spec["paths"]
    assert client.get("/docs").status_code == 404  # Swagger UI would load scripts from a CDN


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"policy": "/nonexistent/policy-dir"}, "policy"),
    ({"policy": "oracle"}, "policy"),
    ({"n_particles": 10}, "n_particles"),
    ({"horizon": 20}, "horizon"),
])
def test_bad_app_settings_raise_value_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_app(**kwargs)


def test_protocol_policy(document: dict[str, Any]) -> None:
    with TestClient(create_app(policy="pain_monitoring", **FAST)) as c:
        assert c.get("/api/health").json()["policy"]["id"] == "pain_monitoring"
        r = _post_json(c, document, plot="false")
        assert r.status_code == 200, r.text
        policy = r.json()["policy"]
        params = policy.pop("parameters")  # a protocol is identified by name, parameters and adaptrx version
        assert policy == {"id": "pain_monitoring", "kind": "protocol", "manifest_sha256": None,
                          "policy_id": None, "note": None, "evidence": None, "evidence_text": None}
        assert params["sessions"] == 3 and params["hold_pain"] == 5.0 and r.json()["adaptrx_version"]


def test_forecast_figure_handles_gaps_and_leaves_pyplot_alone(client: TestClient, document: dict[str, Any]) -> None:
    import sys

    from adaptrx.clinic.plot import figure_png, forecast_figure, prescription_title

    rec = _post_json(client, document, plot="false").json()
    rec["history"]["pain_during"][1] = None
    rec["forecast"]["plans"]["hold"]["pain_median"][0] = None
    fig = forecast_figure(rec)
    top = fig.axes[0]
    assert top.get_ylim() == (0.0, 10.0) and "NRS" in top.get_ylabel()
    assert prescription_title(rec).startswith(f"Week {rec['patient']['next_week']}: ")
    assert prescription_title(rec) in top.get_title()
    assert figure_png(rec).startswith(b"\x89PNG") and figure_png({}).startswith(b"\x89PNG")
    assert "matplotlib.pyplot" not in sys.modules or sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_plan_query_parameter(client: TestClient, document: dict[str, Any]) -> None:
    r = _post_json(client, document, plot="false", plan="sessions=4,load=0.3,delivery=supervised")
    assert r.status_code == 200, r.text
    own = r.json()["forecast"]["clinician_plan"]
    assert own["requested"] == {"sessions": 4, "load": 0.3, "delivery": "supervised"}
    bad = _post_json(client, document, plot="false", plan="load=7")
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "plan.load"


@pytest.mark.slow
def test_worker_processes_answer_concurrent_requests_like_the_threads(document: dict[str, Any]) -> None:
    """With a pool of worker processes (adaptrx serve's default), concurrent requests are all answered, with the
    same recommendation as in-process, and bad input still gets its 422 naming the field."""
    with TestClient(create_app(**FAST)) as c:
        expected = _post_json(c, document, plot="false").json()
    with TestClient(create_app(workers=2, **FAST)) as c, ThreadPoolExecutor(4) as threads:
        answers = list(threads.map(lambda _: _post_json(c, document, plot="false"), range(4)))
        assert all(a.status_code == 200 for a in answers), [a.text[:200] for a in answers]
        assert all(a.json() == expected for a in answers)
        bad = _post_json(c, document, plot="false", plan="sessions=2,load=9")
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "plan.load"
    with pytest.raises(ValueError, match="workers"):
        create_app(workers=-1)
