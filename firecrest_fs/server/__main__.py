"""Command line of the local server: `python -m firecrest_fs.server --root DIR --workdir DIR`.

The client id and secret of the token endpoint come from the environment
variables F7T_LOCAL_CLIENT_ID and F7T_LOCAL_CLIENT_SECRET, never from the command
line, so that they do not show in `ps`.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import socket
import sys
import tempfile

import uvicorn

from firecrest_fs.server.app import build_state, create_app
from firecrest_fs.server.config import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_JOB_QUEUE_DELAY,
    DEFAULT_JOB_RUN_DELAY,
    DEFAULT_MAX_OPS_FILE_SIZE,
    DEFAULT_TOKEN_LIFETIME,
    RuntimeSettings,
    ServerConfig,
)
from firecrest_fs.server.conformance import DocumentError, ResponseChecker, load_document

log = logging.getLogger(__name__)

CLIENT_ID_VARIABLE = "F7T_LOCAL_CLIENT_ID"
CLIENT_SECRET_VARIABLE = "F7T_LOCAL_CLIENT_SECRET"

# How often the ready-file writer checks whether uvicorn has started, in seconds.
STARTUP_POLL_INTERVAL = 0.02


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m firecrest_fs.server",
        description="Run a local FirecREST v2-compatible server over local directories.",
        epilog=f"The token endpoint's client id and secret are read from {CLIENT_ID_VARIABLE} "
        f"and {CLIENT_SECRET_VARIABLE}.",
    )
    parser.add_argument("--root", required=True, help="directory served as the users' file system")
    parser.add_argument(
        "--workdir",
        required=True,
        help="private directory served as the default work directory, where job logs go. "
        "It must not be inside --root, nor contain it",
    )

    parser.add_argument("--system", default="demo", help="name of the system (default: %(default)s)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port to listen on, or 0 for a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--ready-file",
        help="file written atomically, once the server listens, with JSON: url, token_url, system, pid",
    )

    parser.add_argument(
        "--max-ops-file-size",
        type=int,
        default=DEFAULT_MAX_OPS_FILE_SIZE,
        help="upload, download and command output limit in bytes (default: %(default)s)",
    )
    parser.add_argument(
        "--command-timeout",
        type=float,
        default=DEFAULT_COMMAND_TIMEOUT,
        help="time limit of each command in seconds (default: %(default)s)",
    )

    parser.add_argument(
        "--job-queue-delay",
        type=float,
        default=DEFAULT_JOB_QUEUE_DELAY,
        help="seconds a transfer job stays PENDING (default: %(default)s)",
    )
    parser.add_argument(
        "--job-run-delay",
        type=float,
        default=DEFAULT_JOB_RUN_DELAY,
        help="seconds a transfer job stays RUNNING before its script starts (default: %(default)s)",
    )

    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every request (default: %(default)s)"
    )
    parser.add_argument(
        "--timezone",
        help="TZ value for the commands, such as Europe/Zurich, which sets the zone of ops/ls times "
        "(default: the server's TZ)",
    )
    parser.add_argument(
        "--token-lifetime",
        type=int,
        default=DEFAULT_TOKEN_LIFETIME,
        help="lifetime of issued access tokens in seconds (default: %(default)s)",
    )

    parser.add_argument(
        "--validate-responses",
        metavar="SPEC_PATH",
        help="check every response of a documented operation against this OpenAPI document "
        "(YAML or JSON; needs PyYAML) and log an ERROR for each one that does not conform. "
        "The package ships FirecREST's as firecrest_fs/server/openapi-2.5.6.yaml (default: off)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default: %(default)s)",
    )
    return parser.parse_args(argv)


def loopback_host(host: str) -> str:
    """Return `host` as an address when it is a loopback address, and raise ValueError otherwise."""
    if host == "localhost":
        return "127.0.0.1"
    address = ipaddress.ip_address(host)
    if not address.is_loopback:
        raise ValueError(f"--host {host} is not a loopback address. Use 127.0.0.1 or ::1.")
    return str(address)


def check_directories(root: str, workdir: str) -> tuple[str, str]:
    """Return both directories as absolute real paths, and raise ValueError if one is unusable."""
    resolved = []
    for option, directory in (("--root", root), ("--workdir", workdir)):
        path = os.path.realpath(directory)
        if not os.path.isdir(path):
            raise ValueError(f"{option} {directory} is not an existing directory")
        resolved.append(path)
    root_path, workdir_path = resolved
    if os.path.commonpath([root_path, workdir_path]) in (root_path, workdir_path):
        raise ValueError(f"--workdir {workdir} and --root {root} must not be inside one another")
    return root_path, workdir_path


def write_ready_file(path: str, content: dict[str, object]) -> None:
    """Write JSON to `path` through a temporary file and a rename, so readers see all or nothing."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".ready-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as ready:
            json.dump(content, ready)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


async def serve(
    arguments: argparse.Namespace,
    config: ServerConfig,
    host: str,
    response_checker: ResponseChecker | None = None,
) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # With the protocol given, asyncio sets TCP_NODELAY on accepted connections; without it,
    # Nagle's algorithm and delayed ACKs add about 40 ms to every keep-alive request.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, arguments.port))
    listener.listen(128)
    port = listener.getsockname()[1]
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    url = f"http://{url_host}:{port}"

    def remove_ready_file() -> None:
        if arguments.ready_file and os.path.exists(arguments.ready_file):
            os.unlink(arguments.ready_file)

    state = build_state(config, url)
    uvicorn_config = uvicorn.Config(
        # The ready file is removed during the app's shutdown because uvicorn
        # re-raises SIGTERM once serve() ends, so no code after it runs.
        create_app(state, on_stop=remove_ready_file, response_checker=response_checker),
        log_config=None,
        access_log=False,
        proxy_headers=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(uvicorn_config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if serving.done():
            await serving
            return
        await asyncio.sleep(STARTUP_POLL_INTERVAL)

    log.info("listening on %s for system %s", url, config.system)
    if arguments.ready_file:
        write_ready_file(
            arguments.ready_file,
            {"url": url, "token_url": f"{url}/auth/token", "system": config.system, "pid": os.getpid()},
        )
    await serving


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(
        level=arguments.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    # Taken out of the environment so that no command or job inherits them.
    client_id = os.environ.pop(CLIENT_ID_VARIABLE, "")
    client_secret = os.environ.pop(CLIENT_SECRET_VARIABLE, "")
    if not client_id or not client_secret:
        print(f"error: set {CLIENT_ID_VARIABLE} and {CLIENT_SECRET_VARIABLE} in the environment", file=sys.stderr)
        return 2
    try:
        host = loopback_host(arguments.host)
        root, workdir = check_directories(arguments.root, arguments.workdir)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if arguments.max_ops_file_size <= 0 or arguments.command_timeout <= 0 or arguments.token_lifetime <= 0:
        print("error: --max-ops-file-size, --command-timeout and --token-lifetime must be positive", file=sys.stderr)
        return 2

    response_checker = None
    if arguments.validate_responses:
        try:
            response_checker = ResponseChecker(load_document(arguments.validate_responses))
        except DocumentError as exc:
            print(f"error: --validate-responses: {exc}", file=sys.stderr)
            return 2
        log.info("checking responses against %s", arguments.validate_responses)

    settings = RuntimeSettings(
        command_timeout=arguments.command_timeout,
        job_queue_delay=arguments.job_queue_delay,
        job_run_delay=arguments.job_run_delay,
        latency=arguments.latency,
        token_lifetime=arguments.token_lifetime,
    )
    config = ServerConfig(
        root=root,
        workdir=workdir,
        system=arguments.system.lower(),
        max_ops_file_size=arguments.max_ops_file_size,
        timezone=arguments.timezone,
        client_id=client_id,
        client_secret=client_secret,
        settings=settings,
    )
    os.makedirs(config.job_directory, exist_ok=True)
    asyncio.run(serve(arguments, config, host, response_checker))
    return 0


if __name__ == "__main__":
    sys.exit(main())
