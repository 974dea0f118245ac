"""The local server's responses checked against the official FirecREST 2.5.6 OpenAPI document.

The checker is `firecrest_fs.server.conformance`, the one the servers of the test suite
run on every response (`--validate-responses`). Here it checks one call of every
endpoint from the outside, and the server-side check is shown to report a response
that does not conform.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from firecrest_fs.server.conformance import (
    OPENAPI_DOCUMENT,
    Mismatch,
    ResponseChecker,
    load_document,
    schema_mismatches,
)
from firecrest_fs.server.launch import LocalServer, LocalServerError
from server_support import FAST_SETTINGS, api, api_server, area, start_server  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def checker() -> ResponseChecker:
    return ResponseChecker(load_document(OPENAPI_DOCUMENT))


def check(checker: ResponseChecker, response: httpx.Response, template: str, method: str) -> None:
    operation = checker.operation(method, response.request.url.path)
    assert operation is not None, f"{method} {response.request.url.path} is not documented"
    assert operation.template == template
    mismatches = checker.mismatches(
        operation, response.status_code, response.headers.get("content-type", ""), response.content
    )
    assert not mismatches, f"{method} {template} -> {response.status_code}: {mismatches}"


def test_responses_match_the_document(checker, api, api_server, area):
    (area / "f.txt").write_text("1\n2\n3\n")
    (area / "src").mkdir()
    (area / "src" / "g").write_text("g")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("member")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"m"))
    (area / "a.tar").write_bytes(buffer.getvalue())
    f = str(area / "f.txt")
    ops = "/filesystem/{system_name}/ops"
    transfer = "/filesystem/{system_name}/transfer"

    calls = [
        ("/status/systems", "GET", api.http.get("/status/systems", headers=api.headers)),
        ("/status/liveness/", "GET", api.http.get("/status/liveness/")),
        ("/status/{system_name}/userinfo", "GET", api.get("status/userinfo")),
        (f"{ops}/ls", "GET", api.get("filesystem/ops/ls", path=str(area))),
        (f"{ops}/ls", "GET", api.get("filesystem/ops/ls", path=str(area / "missing"))),
        (f"{ops}/ls", "GET", api.get("filesystem/ops/ls", path="/etc")),
        (f"{ops}/stat", "GET", api.get("filesystem/ops/stat", path=f)),
        (f"{ops}/view", "GET", api.get("filesystem/ops/view", path=f, size=100)),
        (f"{ops}/view", "GET", api.get("filesystem/ops/view", path=f, offset="x")),
        (f"{ops}/head", "GET", api.get("filesystem/ops/head", path=f, lines=1)),
        (f"{ops}/tail", "GET", api.get("filesystem/ops/tail", path=f, bytes=2)),
        (f"{ops}/checksum", "GET", api.get("filesystem/ops/checksum", path=f)),
        (f"{ops}/file", "GET", api.get("filesystem/ops/file", path=f)),
        (f"{ops}/download", "GET", api.get("filesystem/ops/download", path=f)),
        (f"{ops}/upload", "POST", api.upload(area, "up.bin", b"data")),
        (f"{ops}/mkdir", "POST", api.post("filesystem/ops/mkdir", {"path": str(area / "d")})),
        (f"{ops}/chmod", "PUT", api.put("filesystem/ops/chmod", {"path": f, "mode": "600"})),
        (f"{ops}/chown", "PUT", api.put("filesystem/ops/chown", {"path": f, "owner": "", "group": ""})),
        (f"{ops}/symlink", "POST", api.post("filesystem/ops/symlink", {"path": f, "linkPath": str(area / "l")})),
        (f"{ops}/compress", "POST", api.post("filesystem/ops/compress", {"path": str(area / "src"), "targetPath": str(area / "s.tgz")})),
        (f"{ops}/extract", "POST", api.post("filesystem/ops/extract", {"path": str(area / "a.tar"), "targetPath": str(area / "d"), "compression": "none"})),
        (f"{ops}/rm", "DELETE", api.delete("filesystem/ops/rm", path=str(area / "up.bin"))),
        (f"{transfer}/mv", "POST", api.post("filesystem/transfer/mv", {"path": str(area / "src"), "targetPath": str(area / "moved")})),
    ]
    job_id = calls[-1][2].json()["transferJob"]["jobId"]
    api.wait_for_job(job_id)
    calls += [
        (f"{transfer}/cp", "POST", api.post("filesystem/transfer/cp", {"path": f, "targetPath": str(area / "copy")})),
        (f"{transfer}/rm", "DELETE", api.delete("filesystem/transfer/rm", path=str(area / "copy"))),
        (f"{transfer}/compress", "POST", api.post("filesystem/transfer/compress", {"path": str(area / "moved"), "targetPath": str(area / "m.tgz")})),
        (f"{transfer}/extract", "POST", api.post("filesystem/transfer/extract", {"path": str(area / "a.tar"), "targetPath": str(area / "d"), "compression": "none"})),
        ("/compute/{system_name}/jobs", "GET", api.get("compute/jobs")),
        ("/compute/{system_name}/jobs/{job_id}", "GET", api.get(f"compute/jobs/{job_id}")),
        ("/compute/{system_name}/jobs/{job_id}", "GET", api.get("compute/jobs/999999")),
        ("/compute/{system_name}/jobs/{job_id}/metadata", "GET", api.get(f"compute/jobs/{job_id}/metadata")),
        ("/compute/{system_name}/jobs/{job_id}", "DELETE", api.delete(f"compute/jobs/{job_id}")),
    ]

    for template, method, response in calls:
        check(checker, response, template, method)
    assert os.path.exists(area / "moved")


FILE = {
    "name": "a", "type": "-", "linkTarget": None, "user": "u", "group": "g",
    "permissions": "rw-r--r--", "lastModified": "2024-05-16T13:48:53", "size": "1",
}


def mismatches_of(checker: ResponseChecker, schema_name: str, value: Any) -> list[Mismatch]:
    return schema_mismatches(checker.document, {"$ref": f"#/components/schemas/{schema_name}"}, value)


def test_checker_finds_schema_errors(checker):
    assert mismatches_of(checker, "File", FILE) == []
    assert mismatches_of(checker, "File", {**FILE, "size": 1}) == [Mismatch("$.size", "expected string, got 1")]
    assert mismatches_of(checker, "File", {key: value for key, value in FILE.items() if key != "name"}) == [
        Mismatch("$", "required property name is missing")
    ]


def test_checker_reports_deepest_option(checker):
    # `jobs` is anyOf [array of JobModel, null]: the array option gets further.
    mismatches = mismatches_of(checker, "GetJobResponse", {"jobs": [{"jobId": 1}]})

    assert mismatches[0].location == "$.jobs[0]"
    assert Mismatch("$.jobs[0].jobId", "expected string, got 1") in mismatches


def test_checker_keywords(checker):
    one_of = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    pair = {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "integer"}], "minItems": 2, "maxItems": 2}
    names = {"type": "object", "propertyNames": {"enum": ["a"]}, "additionalProperties": {"type": "string"}}

    assert schema_mismatches(checker.document, one_of, 1.5) == []
    assert schema_mismatches(checker.document, one_of, 1)
    assert schema_mismatches(checker.document, pair, [1, 2]) == []
    assert schema_mismatches(checker.document, pair, [1, "2"]) == [Mismatch("$[1]", "expected integer, got '2'")]
    assert schema_mismatches(checker.document, pair, [1])
    assert schema_mismatches(checker.document, names, {"a": "x"}) == []
    assert schema_mismatches(checker.document, names, {"a": 1}) == [Mismatch("$.a", "expected string, got 1")]
    assert schema_mismatches(checker.document, names, {"b": "x"})
    assert schema_mismatches(checker.document, {"type": ["string", "null"]}, None) == []
    assert schema_mismatches(checker.document, {"const": "s3"}, "s4")


def test_checker_date_time(checker):
    liveness = {"lastUpdate": 0}

    assert mismatches_of(checker, "GetLiveness", {**liveness, "healthcheckRuns": {"demo": "2026-12-04T10:00:00+00:00"}}) == []
    assert mismatches_of(checker, "GetLiveness", {**liveness, "healthcheckRuns": {"demo": "2026-12-04T10:00:00.5"}}) == []
    assert mismatches_of(checker, "GetLiveness", {**liveness, "healthcheckRuns": {"demo": "2026-12-04"}}) == [
        Mismatch("$.healthcheckRuns.demo", "'2026-12-04' is not a date-time")
    ]


def test_checker_finds_operation(checker):
    ls = checker.operation("GET", "/Filesystem/Demo/ops/LS")
    systems = checker.operation("GET", "/status/systems")
    userinfo = checker.operation("GET", "/status/demo/userinfo")

    assert ls is not None and ls.route == "GET /filesystem/{system_name}/ops/ls"
    assert systems is not None and systems.template == "/status/systems"
    assert userinfo is not None and userinfo.template == "/status/{system_name}/userinfo"
    assert checker.operation("POST", "/filesystem/demo/ops/ls") is None
    assert checker.operation("POST", "/auth/token") is None
    assert checker.operation("GET", "/_local/counters") is None


def test_checker_statuses_and_bodies(checker):
    ls = checker.operation("GET", "/filesystem/demo/ops/ls")
    rm = checker.operation("DELETE", "/filesystem/demo/ops/rm")
    download = checker.operation("GET", "/filesystem/demo/ops/download")
    error = b'{"errorType":"error","message":"Not found","causedBy":null,"data":null,"user":"u"}'

    assert checker.mismatches(ls, 404, "application/json", error) == []
    assert checker.mismatches(ls, 299, "application/json", b"{}") == [Mismatch("status", "299 is not documented")]
    assert "400" in checker.mismatches(ls, 422, "application/json", error)[0].message
    assert checker.mismatches(ls, 200, "text/plain", b"{}")[0].location == "content-type"
    assert checker.mismatches(ls, 200, "application/json", b"{")[0].message.startswith("the body is not valid JSON")
    assert checker.mismatches(rm, 204, "", b"") == []
    assert checker.mismatches(rm, 204, "", b"x")
    assert checker.mismatches(download, 200, "application/octet-stream", b"\x00\xff") == []


def server_errors(log_path: Path) -> list[str]:
    return [line for line in log_path.read_text(errors="replace").splitlines() if " ERROR " in line]


def test_server_logs_nonconforming_response(tmp_path):
    # The server is private to this test because it logs an ERROR on purpose.
    server = start_server(tmp_path, **FAST_SETTINGS)
    try:
        server.set_faults([{"route": "/status/{system_name}/userinfo", "kind": "status", "status": 200, "count": 1}])
        with httpx.Client(base_url=server.url, headers=server.auth_headers(), timeout=30) as client:
            faulted = client.get(f"/status/{server.system}/userinfo")
            normal = client.get(f"/status/{server.system}/userinfo")
    finally:
        server.stop()

    errors = server_errors(tmp_path / "server.log")
    assert faulted.status_code == 200
    assert normal.status_code == 200
    assert len(errors) == 1
    assert "GET /status/{system_name}/userinfo with status 200 does not conform" in errors[0]
    # The error body has `user` (null) but not `group`.
    assert errors[0].endswith("$: required property group is missing")


def test_server_logs_status_422(tmp_path):
    server = start_server(tmp_path, **FAST_SETTINGS)
    try:
        server.set_faults([{"route": "/status/systems", "kind": "status", "status": 422, "count": 1}])
        response = httpx.get(f"{server.url}/status/systems", headers=server.auth_headers(), timeout=30)
    finally:
        server.stop()

    errors = server_errors(tmp_path / "server.log")
    assert response.status_code == 422
    assert len(errors) == 1
    assert "GET /status/systems with status 422" in errors[0]
    assert "validation errors with 400" in errors[0]


def test_validation_off_by_default(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    server = LocalServer(root, tmp_path / "work", log_file=tmp_path / "server.log")

    assert "--validate-responses" not in server.command_line(str(tmp_path / "ready.json"))


def test_missing_document_stops_start(tmp_path):
    root = tmp_path / "root"
    work = tmp_path / "work"
    root.mkdir()
    work.mkdir()
    server = LocalServer(root, work, validate_responses=tmp_path / "missing.yaml")

    with pytest.raises(LocalServerError) as raised:
        server.start(timeout=30)

    assert "cannot read the OpenAPI document" in str(raised.value)
    assert str(tmp_path / "missing.yaml") in str(raised.value)
    assert not server.running
