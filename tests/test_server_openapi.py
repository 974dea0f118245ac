"""The local server's responses checked against the official FirecREST 2.5.6 OpenAPI document.

Each call's JSON body is validated against the schema the document gives for its
path, method and status (`4XX`/`5XX` errors use `ApiResponseError`). The checker
covers what these schemas use: `$ref`, `anyOf`/`oneOf`, `type` (with `null`),
`nullable`, `enum`, `properties`, `required` and `items`.

The document is a copy of the one published with FirecREST release 2.5.6, kept in
`tests/data/`.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from server_support import api, api_server, area  # noqa: F401 (fixtures)

import yaml

SPEC_PATH = Path(__file__).resolve().parent / "data" / "openapi-2.5.6.yaml"

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def schema_errors(spec: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """Return the places where `value` breaks `schema`, or an empty list when it conforms."""
    schema = resolve(spec, schema)
    if value is None and schema.get("nullable"):
        return []
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            options = [schema_errors(spec, option, value, where) for option in schema[combinator]]
            if any(not errors for errors in options):
                return []
            return [f"{where}: matches no option of {combinator}: {options}"]

    expected_type = schema.get("type")
    if expected_type == "null":
        return [] if value is None else [f"{where}: expected null, got {value!r}"]
    if expected_type is not None:
        allowed = JSON_TYPES[expected_type]
        if not isinstance(value, allowed) or (expected_type in ("integer", "number") and isinstance(value, bool)):
            return [f"{where}: expected {expected_type}, got {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]

    errors: list[str] = []
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: required property {name} is missing")
        for name, property_schema in schema.get("properties", {}).items():
            if name in value:
                errors += schema_errors(spec, property_schema, value[name], f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(spec, schema["items"], item, f"{where}[{index}]")
    return errors


def response_schema(spec: dict[str, Any], template: str, method: str, status: int) -> dict[str, Any] | None:
    responses = spec["paths"][template][method.lower()]["responses"]
    entry = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    assert entry is not None, f"{method} {template} documents no status {status}"
    content = entry.get("content", {}).get("application/json")
    return content["schema"] if content else None


def check(spec, response, template: str, method: str) -> None:
    schema = response_schema(spec, template, method, response.status_code)
    if response.headers.get("content-type") == "application/octet-stream":
        # The document gives ops/download a JSON schema, but the server sends raw bytes.
        assert template.endswith("/ops/download")
        return
    if schema is None:
        assert response.content == b""
        return
    errors = schema_errors(spec, schema, response.json())
    assert not errors, f"{method} {template} -> {response.status_code}: {errors}"


def test_responses_match_the_document(spec, api, api_server, area):
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
        check(spec, response, template, method)
    assert os.path.exists(area / "moved")


def test_checker_finds_errors(spec):
    file_schema = {"$ref": "#/components/schemas/File"}
    good = {
        "name": "a", "type": "-", "linkTarget": None, "user": "u", "group": "g",
        "permissions": "rw-r--r--", "lastModified": "2024-05-16T13:48:53", "size": "1",
    }

    assert schema_errors(spec, file_schema, good) == []
    assert schema_errors(spec, file_schema, {**good, "size": 1})
    assert schema_errors(spec, file_schema, {key: value for key, value in good.items() if key != "name"})
    assert schema_errors(spec, {"$ref": "#/components/schemas/GetJobResponse"}, {"jobs": [{"jobId": 1}]})
