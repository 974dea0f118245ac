"""Test knobs: request counters, injected faults, added latency and runtime settings.

Everything here is outside the FirecREST API. The knobs are reached under
`/_local/` with the same Bearer token as the API. Requests to `/_local/` are
never counted, delayed or faulted.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import random
import threading
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from firecrest_fs.server.config import RuntimeSettings
from firecrest_fs.server.errors import error_body

log = logging.getLogger(__name__)

KNOBS_PREFIX = "/_local/"
INJECTED_FAULT_MESSAGE = "Injected fault: the local server's test knobs responded to this request."

# How long a dropped connection waits for the server to notice the disconnect.
DROP_WAIT_SECONDS = 1.0


class FaultRule(BaseModel):
    """One injected fault, as `PUT /_local/faults` takes it.

    Kinds:
    - `status`: respond with `status` (and `Retry-After: retry_after` when set) instead of handling the request;
    - `drop`: close the connection without a response;
    - `stall`: wait `seconds`, then handle the request normally;
    - `job_fail`: the next matching transfer jobs end FAILED with exit code 1 and do nothing;
    - `token_expiry`: tokens issued by `/auth/token` expire after `seconds`.

    `method` and `route` (a route template such as `/filesystem/{system_name}/ops/ls`)
    select requests, null meaning any. `count` is how many times the rule applies,
    null meaning until the faults are cleared. `probability` is the chance that a
    matching request or job is affected.
    """

    method: str | None = None
    route: str | None = None
    kind: Literal["status", "drop", "stall", "job_fail", "token_expiry"]
    status: int = Field(default=503, ge=100, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    count: int | None = Field(default=None, ge=0)
    probability: float = Field(default=1.0, ge=0, le=1)
    seconds: float = Field(default=0.0, ge=0)


class SettingsUpdate(BaseModel):
    """Fields of `PUT /_local/settings`. Missing fields keep their value. Times are in seconds."""

    latency: float | None = Field(default=None, ge=0)
    command_timeout: float | None = Field(default=None, gt=0)
    job_queue_delay: float | None = Field(default=None, ge=0)
    job_run_delay: float | None = Field(default=None, ge=0)
    token_lifetime: int | None = Field(default=None, gt=0)


class Knobs:
    """Counters and fault rules shared by the middleware, the token endpoint and the scheduler."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self._counts: collections.Counter[str] = collections.Counter()
        self._rules: list[FaultRule] = []
        # Rule counts change from the event loop only, but the lock keeps the
        # check-and-decrement atomic should a handler ever run in a thread.
        self._lock = threading.Lock()

    # -- Counters --------------------------------------------------------------

    def count(self, method: str, route: str) -> None:
        self._counts[f"{method} {route}"] += 1

    def counts(self) -> dict[str, int]:
        return dict(sorted(self._counts.items()))

    def reset_counts(self) -> None:
        self._counts.clear()

    # -- Faults ----------------------------------------------------------------

    def set_rules(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules = list(rules)
        log.info("fault rules set: %s", [rule.model_dump() for rule in rules])

    def clear_rules(self) -> None:
        with self._lock:
            self._rules = []
        log.info("fault rules cleared")

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def take_request_fault(self, method: str, route: str) -> FaultRule | None:
        """Return the first request fault that applies to this request, and use it up once."""
        return self._take(("status", "drop", "stall"), method, route)

    def take_job_failure(self) -> bool:
        return self._take(("job_fail",), None, None) is not None

    def token_lifetime(self) -> float:
        """Return the lifetime in seconds of the token about to be issued."""
        rule = self._take(("token_expiry",), None, None)
        return rule.seconds if rule is not None else self.settings.token_lifetime

    def _take(self, kinds: tuple[str, ...], method: str | None, route: str | None) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.kind not in kinds or rule.count == 0:
                    continue
                if method is not None and rule.method is not None and rule.method.upper() != method:
                    continue
                if route is not None and rule.route is not None and rule.route.lower() != route.lower():
                    continue
                if random.random() >= rule.probability:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                return rule
        return None


class KnobsMiddleware:
    """ASGI middleware around the API: lower-cases the URL path, counts, delays and faults requests.

    The real server lower-cases the whole URL path, so system names are
    case-insensitive. The route template of a request is found by matching the
    app's routes, the same way Starlette's router does.
    """

    def __init__(self, app: ASGIApp, knobs: Knobs, routes: list[BaseRoute]) -> None:
        self.app = app
        self.knobs = knobs
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        scope["path"] = scope["path"].lower()
        if scope["path"].startswith(KNOBS_PREFIX):
            await self.app(scope, receive, send)
            return

        method = scope["method"]
        route = self._route_template(scope)
        self.knobs.count(method, route)

        latency = self.knobs.settings.latency
        if latency > 0:
            await asyncio.sleep(latency)

        rule = self.knobs.take_request_fault(method, route)
        if rule is None:
            await self.app(scope, receive, send)
            return

        log.info("injecting fault %s into %s %s", rule.kind, method, route)
        if rule.kind == "stall":
            await asyncio.sleep(rule.seconds)
            await self.app(scope, receive, send)
        elif rule.kind == "drop":
            await _drop_connection(receive, send)
        else:
            await _send_fault_status(send, rule)

    def _route_template(self, scope: Scope) -> str:
        """Return the template of the route that will handle the request, or its path."""
        partial = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return route.path
            if match == Match.PARTIAL and partial is None:
                partial = route.path
        return partial or scope["path"]


async def _send_fault_status(send: Send, rule: FaultRule) -> None:
    body = json.dumps(error_body(INJECTED_FAULT_MESSAGE, user=None)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if rule.retry_after is not None:
        headers.append((b"retry-after", f"{rule.retry_after:g}".encode()))
    await send({"type": "http.response.start", "status": rule.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _drop_connection(receive: Receive, send: Send) -> None:
    """Close the client's connection without sending a byte.

    ASGI has no message for this, so the transport is taken from uvicorn's
    request cycle object, to which its `send` is bound. An outer middleware that
    wraps `send` must name the function it wraps in `__wrapped__`, as the response
    validation does, so that this function can reach uvicorn's.
    """
    while hasattr(send, "__wrapped__"):
        send = send.__wrapped__
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        # Without uvicorn's transport, the closest fallback is a response that
        # announces a body and ends the connection before sending it.
        await send({
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-length", b"1000")],
        })
        raise ConnectionAbortedError("connection dropped by an injected fault")

    transport.close()
    try:
        async with asyncio.timeout(DROP_WAIT_SECONDS):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        log.debug("the dropped connection was not reported as disconnected")


def knobs_router(knobs: Knobs) -> APIRouter:
    """Build the router of the `/_local/` test knobs."""
    router = APIRouter(prefix="/_local")

    @router.get("/counters")
    async def get_counters() -> dict[str, int]:
        return knobs.counts()

    @router.delete("/counters", status_code=204)
    async def delete_counters() -> Response:
        knobs.reset_counts()
        return Response(status_code=204)

    @router.get("/faults")
    async def get_faults() -> list[FaultRule]:
        return knobs.rules()

    @router.put("/faults")
    async def put_faults(rules: list[FaultRule]) -> list[FaultRule]:
        knobs.set_rules(rules)
        return knobs.rules()

    @router.delete("/faults", status_code=204)
    async def delete_faults() -> Response:
        knobs.clear_rules()
        return Response(status_code=204)

    @router.get("/settings")
    async def get_settings() -> dict[str, float]:
        return dataclasses.asdict(knobs.settings)

    @router.put("/settings")
    async def put_settings(update: SettingsUpdate) -> dict[str, float]:
        for name, value in update.model_dump(exclude_none=True).items():
            setattr(knobs.settings, name, value)
        log.info("settings changed: %s", update.model_dump(exclude_none=True))
        return dataclasses.asdict(knobs.settings)

    return router
