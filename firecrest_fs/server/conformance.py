"""Checks of the local server's responses against the official FirecREST OpenAPI document.

`ResponseChecker` finds the operation of a request in the document and checks a
response's status and JSON body against the schema documented for that status.
`ResponseValidationMiddleware` runs that check on every response of a documented
operation and logs one ERROR line for each response that does not conform.

The schema checker covers the JSON Schema keywords that the document uses:
`$ref`, `anyOf`, `oneOf`, `allOf`, `type` (a name or a list, with `null`),
`nullable`, `enum`, `const`, `properties`, `required`, `additionalProperties`,
`propertyNames`, `items`, `prefixItems`, `minItems`, `maxItems` and the
`date-time` format. Other keywords, such as `discriminator` and other formats,
are not checked.

The document is `openapi-2.5.6.yaml` beside this file, a copy of the one published
with FirecREST release 2.5.6. Where the document and the real server differ, the
checks follow the real server (see `ResponseChecker.mismatches`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

OPENAPI_DOCUMENT = Path(__file__).resolve().with_name("openapi-2.5.6.yaml")

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}

# An RFC 3339 date-time. The offset is optional because pydantic, which the real
# server uses, serialises a datetime without a time zone with no offset.
DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?")


class DocumentError(ValueError):
    """The OpenAPI document cannot be read or has no `paths`."""


def load_document(path: str | Path) -> dict[str, Any]:
    """Read an OpenAPI document in YAML or JSON.

    PyYAML is imported here, so the server needs it only when it checks responses.
    Raises DocumentError when the file cannot be read or parsed.
    """
    try:
        import yaml
    except ImportError as exc:
        raise DocumentError("checking responses needs PyYAML: install it with `pip install pyyaml`") from exc

    # The C parser reads the 2.5.6 document in about 25 ms, the Python one in about 160 ms.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path, encoding="utf-8") as document_file:
            document = yaml.load(document_file, Loader=loader)
    except (OSError, yaml.YAMLError) as exc:
        raise DocumentError(f"cannot read the OpenAPI document {path}: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        raise DocumentError(f"the OpenAPI document {path} has no `paths` object")
    return document


# -- Schemas ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One place where a value breaks a schema. `location` is a JSON path such as `$.output[0].size`."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow local `$ref`s such as `#/components/schemas/File` until a schema without one."""
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def schema_mismatches(
    document: dict[str, Any], schema: dict[str, Any] | bool, value: Any, location: str = "$"
) -> list[Mismatch]:
    """Return the places where `value` breaks `schema`, or an empty list when it conforms."""
    if schema is True:
        return []
    if schema is False:
        return [Mismatch(location, "no value is allowed here")]
    schema = resolve(document, schema)
    if value is None and schema.get("nullable"):
        return []

    mismatches = _combinator_mismatches(document, schema, value, location)
    if mismatches:
        return mismatches

    expected_types = schema.get("type")
    if expected_types is not None:
        if isinstance(expected_types, str):
            expected_types = [expected_types]
        if not any(_has_type(value, name) for name in expected_types):
            return [Mismatch(location, f"expected {' or '.join(expected_types)}, got {_shorten(value)}")]
    if "enum" in schema and value not in schema["enum"]:
        return [Mismatch(location, f"{_shorten(value)} is not one of {schema['enum']}")]
    if "const" in schema and value != schema["const"]:
        return [Mismatch(location, f"expected {schema['const']!r}, got {_shorten(value)}")]
    if schema.get("format") == "date-time" and isinstance(value, str) and not DATE_TIME.fullmatch(value):
        return [Mismatch(location, f"{value!r} is not a date-time")]

    if isinstance(value, dict):
        mismatches += _object_mismatches(document, schema, value, location)
    if isinstance(value, list):
        mismatches += _array_mismatches(document, schema, value, location)
    return mismatches


def _combinator_mismatches(
    document: dict[str, Any], schema: dict[str, Any], value: Any, location: str
) -> list[Mismatch]:
    for option in schema.get("allOf", []):
        mismatches = schema_mismatches(document, option, value, location)
        if mismatches:
            return mismatches

    for combinator in ("anyOf", "oneOf"):
        if combinator not in schema:
            continue
        results = [schema_mismatches(document, option, value, location) for option in schema[combinator]]
        matching = sum(1 for mismatches in results if not mismatches)
        if combinator == "oneOf" and matching > 1:
            return [Mismatch(location, f"matches {matching} options of oneOf, not exactly one")]
        if matching == 0:
            return _closest_option(results, combinator, location)
    return []


def _closest_option(results: list[list[Mismatch]], combinator: str, location: str) -> list[Mismatch]:
    """Return the mismatches of the option that got furthest into the value.

    For `anyOf: [{type: array, ...}, {type: null}]` and a list, that is the array
    option's mismatch inside the list rather than "expected null".
    """
    deepest = max(len(mismatches[0].location) for mismatches in results)
    closest = [mismatches for mismatches in results if len(mismatches[0].location) == deepest]
    if deepest > len(location) and len(closest) == 1:
        return closest[0]
    summary = "; ".join(str(mismatches[0]) for mismatches in results)
    return [Mismatch(location, f"matches no option of {combinator} ({summary})")]


def _object_mismatches(
    document: dict[str, Any], schema: dict[str, Any], value: dict[str, Any], location: str
) -> list[Mismatch]:
    mismatches: list[Mismatch] = []
    for name in schema.get("required", []):
        if name not in value:
            mismatches.append(Mismatch(location, f"required property {name} is missing"))
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if "propertyNames" in schema:
            mismatches += schema_mismatches(document, schema["propertyNames"], name, f"{location}.{name} (name)")
        if name in properties:
            mismatches += schema_mismatches(document, properties[name], item, f"{location}.{name}")
        else:
            mismatches += schema_mismatches(document, extra, item, f"{location}.{name}")
    return mismatches


def _array_mismatches(
    document: dict[str, Any], schema: dict[str, Any], value: list[Any], location: str
) -> list[Mismatch]:
    mismatches: list[Mismatch] = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        mismatches.append(Mismatch(location, f"has {len(value)} items, fewer than {schema['minItems']}"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        mismatches.append(Mismatch(location, f"has {len(value)} items, more than {schema['maxItems']}"))
    prefix = schema.get("prefixItems", [])
    for index, item in enumerate(value):
        if index < len(prefix):
            item_schema = prefix[index]
        else:
            item_schema = schema.get("items", True)
        mismatches += schema_mismatches(document, item_schema, item, f"{location}[{index}]")
    return mismatches


def _has_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        # JSON Schema counts a number with a zero fraction, such as 5.0, as an integer.
        return value.is_integer()
    return isinstance(value, JSON_TYPES[name])


def _shorten(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- Responses ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Operation:
    """One documented path template and method, with the `responses` object the document gives it."""

    method: str
    template: str
    responses: dict[str, Any]

    @property
    def route(self) -> str:
        return f"{self.method} {self.template}"


class ResponseChecker:
    """Finds the documented operation of a request and checks responses against it."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._operations: list[tuple[re.Pattern[str], int, Operation]] = []
        for template, path_item in document["paths"].items():
            pattern = re.compile("".join(
                "[^/]+" if part.startswith("{") else re.escape(part)
                for part in re.split(r"(\{[^}]+\})", template)
            ))
            literal_length = len(re.sub(r"\{[^}]+\}", "", template))
            for method, operation in path_item.items():
                if method in HTTP_METHODS:
                    entry = Operation(method.upper(), template, operation.get("responses", {}))
                    self._operations.append((pattern, literal_length, entry))

    def operation(self, method: str, path: str) -> Operation | None:
        """Return the documented operation that `method` and the URL `path` reach, or None.

        The path is compared in lower case because the real server lower-cases the
        URL path before routing. When several templates match, the one with the most
        literal characters wins, as `/status/systems` over `/status/{system_name}`.
        """
        path = path.lower()
        candidates = [
            (literal_length, operation)
            for pattern, literal_length, operation in self._operations
            if operation.method == method.upper() and pattern.fullmatch(path)
        ]
        if not candidates:
            return None
        return max(candidates, key=lambda candidate: candidate[0])[1]

    def mismatches(self, operation: Operation, status: int, content_type: str, body: bytes) -> list[Mismatch]:
        """Return the ways a response differs from the document, or an empty list when it conforms.

        The status must be documented exactly or by its class (`4XX`). Where the
        document and the real server differ, the real server wins:
        - Request validation errors: the document lets a 422 pass under `4XX`, but the
          real server returns them with status 400, so a 422 is a mismatch.
        - `ops/download`: the document gives its 200 response `application/json` with
          an empty schema, but the real server sends the file's raw bytes as
          `application/octet-stream`. An empty schema therefore accepts any body.
        """
        if status == 422:
            return [Mismatch("status", "the real server returns validation errors with 400, never 422")]
        entry = operation.responses.get(str(status)) or operation.responses.get(f"{status // 100}XX")
        entry = entry or operation.responses.get("default")
        if entry is None:
            return [Mismatch("status", f"{status} is not documented")]

        json_content = entry.get("content", {}).get("application/json")
        if json_content is None:
            if body:
                return [Mismatch("$", f"the document gives no body, but the response has {len(body)} bytes")]
            return []
        schema = json_content.get("schema", {})
        if not schema:
            return []
        if content_type.split(";")[0].strip().lower() != "application/json":
            return [Mismatch("content-type", f"expected application/json, got {content_type or 'none'}")]
        try:
            value = json.loads(body)
        except ValueError as exc:
            return [Mismatch("$", f"the body is not valid JSON: {exc}")]
        return schema_mismatches(self.document, schema, value)


class ResponseValidationMiddleware:
    """ASGI middleware that checks every response of a documented operation.

    A response that does not conform is still sent unchanged, and one ERROR line
    names its route, its status and the first mismatch. The line is written before
    the last part of the body is sent, so it is in the log when the client has the
    response. Responses of undocumented routes, such as the token endpoint and the
    test knobs, are not checked.
    """

    def __init__(self, app: ASGIApp, checker: ResponseChecker) -> None:
        self.app = app
        self.checker = checker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        operation = None
        if scope["type"] == "http":
            operation = self.checker.operation(scope["method"], scope["path"])
        if operation is None:
            await self.app(scope, receive, send)
            return

        status = 0
        content_type = ""
        body = bytearray()

        async def checking_send(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        content_type = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    self._report(operation, status, content_type, bytes(body))
            await send(message)

        # Named as functools.wraps would, so that the knobs' dropped-connection fault
        # can still reach the server's own send and, through it, the transport.
        checking_send.__wrapped__ = send  # type: ignore[attr-defined]
        await self.app(scope, receive, checking_send)

    def _report(self, operation: Operation, status: int, content_type: str, body: bytes) -> None:
        mismatches = self.checker.mismatches(operation, status, content_type, body)
        if mismatches:
            log.error(
                "response of %s with status %d does not conform to the OpenAPI document: %s",
                operation.route,
                status,
                mismatches[0],
            )
