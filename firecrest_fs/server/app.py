"""The FastAPI application: shared state, dependencies, error handlers and headers.

Dependencies run in the real server's order: authentication (401), the system
(404), then the request path (400), and only then FastAPI's validation of the
endpoint's own parameters (400 with `errorType: "validation"`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from typing import Any, AsyncIterator, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from firecrest_fs.server.auth import TokenIssuer, token_router
from firecrest_fs.server.commands import CommandRunner, command_environment
from firecrest_fs.server.config import APP_VERSION, ServerConfig
from firecrest_fs.server.conformance import ResponseChecker, ResponseValidationMiddleware
from firecrest_fs.server.errors import ApiError, error_body
from firecrest_fs.server.jobs import Scheduler
from firecrest_fs.server.knobs import Knobs, KnobsMiddleware
from firecrest_fs.server.paths import PathPolicy

log = logging.getLogger(__name__)

MISSING_PATH_MESSAGE = "All filesystem requests require a path or source_path parameter."
SYSTEM_NOT_FOUND_MESSAGE = "System not found"


@dataclasses.dataclass
class ServerState:
    """Everything the request handlers share."""

    config: ServerConfig
    policy: PathPolicy
    runner: CommandRunner
    issuer: TokenIssuer
    knobs: Knobs
    scheduler: Scheduler


def build_state(config: ServerConfig, base_url: str) -> ServerState:
    """Create the shared state. Call it inside the event loop that will serve requests."""
    knobs = Knobs(config.settings)
    return ServerState(
        config=config,
        policy=PathPolicy(config.system, [fs.path for fs in config.file_systems]),
        runner=CommandRunner(config.settings, config.max_ops_file_size, config.timezone),
        issuer=TokenIssuer(f"{base_url}/auth", config.username),
        knobs=knobs,
        scheduler=Scheduler(config, knobs, command_environment(config.timezone)),
    )


def server_state(request: Request) -> ServerState:
    return request.app.state.server


# -- Dependencies ---------------------------------------------------------------


async def authenticated_user(request: Request) -> str:
    """Check the Bearer token and return its username."""
    username = server_state(request).issuer.authenticate(request.headers.get("authorization"))
    request.state.username = username
    return username


async def known_system(system_name: str, request: Request) -> str:
    """Return the system name, or raise 404 when the server does not serve that system."""
    if system_name != server_state(request).config.system:
        raise ApiError(404, SYSTEM_NOT_FOUND_MESSAGE)
    return system_name


async def checked_request_path(request: Request, system: str = Depends(known_system)) -> str:
    """Return the request's path after the real server's file-system check.

    Like the real server, the path is the `path` query parameter if present, else
    `path`, `sourcePath` or `source_path` of the JSON body.
    """
    path = request.query_params.get("path")
    if path is None:
        path = await _body_path(request)
    if path is None:
        raise ApiError(400, MISSING_PATH_MESSAGE)
    server_state(request).policy.check_request_path(path)
    return path


async def _body_path(request: Request) -> str | None:
    if request.method in ("GET", "DELETE"):
        return None
    try:
        body = await request.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for key in ("path", "sourcePath", "source_path"):
        if isinstance(body.get(key), str):
            return body[key]
    return None


# -- Errors and headers -------------------------------------------------------------


def _username(request: Request) -> str | None:
    return getattr(request.state, "username", None)


def _error_response(
    request: Request,
    status_code: int,
    message: str,
    *,
    error_type: str = "error",
    data: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    user = _username(request)
    response_headers = dict(headers or {})
    if user is not None:
        response_headers["F7T-AuthUsername"] = user
    return JSONResponse(
        error_body(message, user=user, error_type=error_type, data=data),
        status_code=status_code,
        headers=response_headers,
    )


async def _handle_api_error(request: Request, exc: ApiError) -> JSONResponse:
    level = logging.WARNING if exc.status_code >= 500 else logging.DEBUG
    log.log(level, "%s %s failed with %d: %s", request.method, request.url.path, exc.status_code, exc.message)
    return _error_response(
        request, exc.status_code, exc.message, error_type=exc.error_type, data=exc.data, headers=exc.headers
    )


async def _handle_http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error_response(request, exc.status_code, str(exc.detail), headers=exc.headers)


async def _handle_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    fields = [
        {
            "location": str(error["loc"][0]) if error["loc"] else "",
            "name": ".".join(str(part) for part in error["loc"][1:]),
            "message": error["msg"],
        }
        for error in exc.errors()
    ]
    log.debug("%s %s failed validation: %s", request.method, request.url.path, fields)
    return _error_response(request, 400, str(exc), error_type="validation", data={"fields": fields})


async def _handle_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error_response(request, 500, str(exc) or type(exc).__name__)


class MetaHeadersMiddleware:
    """Adds `F7T-Timestamp` and `F7T-AppVersion` to every response, as the real server does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"f7t-timestamp", str(time.time()).encode()))
                headers.append((b"f7t-appversion", APP_VERSION.encode()))
                message = {**message, "headers": headers}
                log.debug(
                    "%s %s -> %d in %.3f s",
                    scope["method"],
                    scope["path"],
                    message["status"],
                    time.monotonic() - started,
                )
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- The application ---------------------------------------------------------------


def create_app(
    state: ServerState,
    on_stop: Callable[[], None] | None = None,
    response_checker: ResponseChecker | None = None,
) -> ASGIApp:
    """Build the ASGI app: FastAPI with every route, inside the header and knobs middleware.

    `on_stop` runs when the server shuts down, after the jobs were cancelled. With
    `response_checker`, every response of a documented operation is checked against
    the OpenAPI document, injected faults included, and each one that does not
    conform is logged as an ERROR.
    """
    # Imported here because the route modules import the dependencies above.
    from firecrest_fs.server import routes_ops, routes_status, routes_transfer
    from firecrest_fs.server.knobs import knobs_router

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("serving system %s with file systems %s", state.config.system, state.policy.roots)
        yield
        await state.scheduler.shutdown()
        if on_stop is not None:
            on_stop()
        log.info("server stopped")

    app = FastAPI(title="FirecREST (firecrest-fs local server)", version=APP_VERSION, lifespan=lifespan)
    app.state.server = state

    authenticated = [Depends(authenticated_user)]
    public_routers = [
        token_router(state.issuer, state.config.client_id, state.config.client_secret, state.knobs.token_lifetime),
        routes_status.liveness_router,
    ]
    api_routers = [
        routes_status.router,
        routes_status.compute_router,
        routes_ops.router,
        routes_transfer.router,
        knobs_router(state.knobs),
    ]
    for router in public_routers:
        app.include_router(router)
    for router in api_routers:
        app.include_router(router, dependencies=authenticated)
    # Route templates for the counters and fault rules, taken from the routers
    # themselves because FastAPI's own route list may hold nested router objects.
    routes = [route for router in public_routers + api_routers for route in router.routes]

    app.add_exception_handler(ApiError, _handle_api_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(Exception, _handle_unexpected_error)

    asgi_app: ASGIApp = KnobsMiddleware(MetaHeadersMiddleware(app), state.knobs, routes)
    if response_checker is not None:
        asgi_app = ResponseValidationMiddleware(asgi_app, response_checker)
    return asgi_app
