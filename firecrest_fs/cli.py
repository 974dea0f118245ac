"""The `firecrest-fs` command line: `mount` and `demo`."""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import trio

from . import __version__
from .client import Timeouts
from .errors import ConfigurationError
from .mount import Source, describe_error, run
from .filesystem import MountOptions

log = logging.getLogger("firecrest_fs")

# Options handed to FUSE as they are.
_FUSE_FLAGS = {"allow_other", "allow_root", "nosuid", "nodev", "noexec", "suid", "dev", "exec", "noatime", "atime"}
_SIZE_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}

MOUNT_OPTIONS_HELP = """\
mount options (-o key=value,...):
  ro                   mount read-only
  allow_other          let other local users see the mount (needs user_allow_other in /etc/fuse.conf)
  dir_cache_ttl=SEC    how long directory listings are reused (default 10; 0 = always ask the server)
  entry_timeout=SEC    how long the kernel caches names (default 1)
  attr_timeout=SEC     how long the kernel caches attributes (default 1)
  timeout=SEC          deadline of each API request, retries included (default 30)
  job_timeout=SEC      how long to wait for a transfer job such as a directory rename (default 600)
  cache_size=BYTES     local cache of read file contents, with K, M or G suffix (default 512M)
  log_file=PATH        where a background mount logs (default: syslog)
"""


@dataclass
class ParsedOptions:
    mount: MountOptions = field(default_factory=MountOptions)
    timeouts: Timeouts = field(default_factory=Timeouts)
    fuse: set[str] = field(default_factory=set)
    log_file: str | None = None


def _seconds(key: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigurationError(f"invalid value {value!r} for -o {key}: expected seconds") from None
    if seconds < 0:
        raise ConfigurationError(f"invalid value {value!r} for -o {key}: must not be negative")
    return seconds


def _bytes(key: str, value: str) -> int:
    text = value.strip().lower()
    factor = _SIZE_SUFFIXES.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in _SIZE_SUFFIXES else text
    try:
        return int(float(number) * factor)
    except ValueError:
        raise ConfigurationError(f"invalid value {value!r} for -o {key}: expected bytes, e.g. 512M") from None


def parse_mount_options(specs: list[str]) -> ParsedOptions:
    """Parse `-o` values (each a comma-separated list) into mount settings."""
    parsed = ParsedOptions()
    deadline = parsed.timeouts.deadline
    for spec in specs:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, has_value, value = item.partition("=")
            if key == "ro":
                parsed.mount.read_only = True
            elif key == "rw":
                parsed.mount.read_only = False
            elif key in _FUSE_FLAGS and not has_value:
                parsed.fuse.add(key)
            elif key in ("dir_cache_ttl", "cache_ttl") and has_value:
                parsed.mount.dir_cache_ttl = _seconds(key, value)
            elif key == "entry_timeout" and has_value:
                parsed.mount.entry_timeout = _seconds(key, value)
            elif key == "attr_timeout" and has_value:
                parsed.mount.attr_timeout = _seconds(key, value)
            elif key == "timeout" and has_value:
                deadline = _seconds(key, value)
            elif key == "job_timeout" and has_value:
                parsed.mount.job_timeout = _seconds(key, value)
            elif key == "cache_size" and has_value:
                parsed.mount.cache_bytes = _bytes(key, value)
            elif key == "log_file" and has_value:
                parsed.log_file = value
            else:
                raise ConfigurationError(f"unknown mount option {item!r}; see 'firecrest-fs mount --help'")
    parsed.timeouts = Timeouts(deadline=deadline)
    return parsed


def _setup_logging(debug: bool, log_file: str | None = None, *, syslog: bool = False) -> None:
    handler: logging.Handler
    if log_file:
        handler = logging.FileHandler(log_file)
    elif syslog and os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.ident = "firecrest-fs: "
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # httpx logs every request at INFO; only its problems matter here.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _daemonize() -> int:
    """Fork into the background; the parent exits when the child reports the mount ready.

    Returns the pipe on which the child reports: b"ok", or an exit status digit and an
    error message.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read()
        if message == b"ok":
            os._exit(0)
        if not message:
            sys.stderr.write("firecrest-fs: the mount process exited during start-up\n")
            os._exit(1)
        sys.stderr.write(message[1:].decode(errors="replace"))
        os._exit(int(message[:1]))
    os.close(read_end)
    os.setsid()
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    return write_end


def _serve(source: Source, mountpoint: str, parsed: ParsedOptions, env: Mapping[str, str], on_ready=None) -> None:
    trio.run(lambda: run(source, mountpoint, parsed.mount, env, timeouts=parsed.timeouts,
                         fuse_options=parsed.fuse, on_ready=on_ready))


def _check_mountpoint(path: str) -> str:
    mountpoint = os.path.abspath(path)
    if not os.path.isdir(mountpoint):
        raise ConfigurationError(f"mount point {mountpoint} does not exist or is not a directory")
    return mountpoint


def cmd_mount(args: argparse.Namespace) -> int:
    parsed = parse_mount_options(args.options)
    source = Source.parse(args.source)
    mountpoint = _check_mountpoint(args.mountpoint)
    if args.foreground:
        _setup_logging(args.debug, parsed.log_file)
        _serve(source, mountpoint, parsed, os.environ)
        return 0
    report = _daemonize()
    _setup_logging(args.debug, parsed.log_file, syslog=True)

    def ready() -> None:
        os.write(report, b"ok")
        os.close(report)

    try:
        _serve(source, mountpoint, parsed, os.environ, on_ready=ready)
    except BaseException as exc:
        log.error("mount failed: %s", describe_error(exc))
        status = 2 if isinstance(exc, ConfigurationError) else 1
        try:
            os.write(report, f"{status}firecrest-fs: {describe_error(exc)}\n".encode())
        except OSError:
            pass
        raise
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import default_root

    parsed = parse_mount_options(args.options)
    mountpoint = os.path.abspath(args.mountpoint)
    os.makedirs(mountpoint, exist_ok=True)
    _setup_logging(args.debug)
    root = Path(args.root).resolve() if args.root else default_root()
    if not root.is_dir():
        raise ConfigurationError(f"--root {root} is not a directory")
    # The server's default work directory (job logs, the mount's staging folder) is
    # private to this run and removed at the end.
    workdir = Path(tempfile.mkdtemp(prefix="firecrest-fs-demo-work-"))
    if workdir.is_relative_to(root):
        shutil.rmtree(workdir)
        raise ConfigurationError(f"--root {root} contains the temporary folder; serve a folder inside it")
    try:
        _run_demo(args, parsed, root, workdir, mountpoint)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _run_demo(args: argparse.Namespace, parsed: ParsedOptions, root: Path, workdir: Path, mountpoint: str) -> None:
    from .server.launch import LocalServer

    server = LocalServer(
        root, workdir,
        max_ops_file_size=args.max_ops_file_size,
        command_timeout=args.command_timeout,
        job_queue_delay=args.job_queue_delay,
        job_run_delay=args.job_run_delay,
        latency=args.latency,
        timezone=args.timezone,
    )
    with server:
        source = Source(server.system, os.fsencode(root))

        def ready() -> None:
            print(f"firecrest-fs demo: serving {root} as system '{server.system}' at {server.url}", flush=True)
            print(f"  mounted {server.system}:{root} on {mountpoint}", flush=True)
            print(f"  unmount with: fusermount3 -u {mountpoint}   (or press Ctrl-C)", flush=True)

        # The credentials go to the mount in memory, never on a command line.
        _serve(source, mountpoint, parsed, server.client_env(), on_ready=ready)
    print(f"firecrest-fs demo: stopped; the served files stay in {root}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firecrest-fs",
        description="Mount HPC cluster file systems through the FirecREST v2 API.",
    )
    parser.add_argument("--version", action="version", version=f"firecrest-fs {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    mount = commands.add_parser(
        "mount", help="mount SYSTEM[:PATH] on MOUNTPOINT",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Mount PATH (default: the system's default work directory) of one system.\n\n"
                    "Credentials come from the environment: FIRECREST_URL, and FIRECREST_TOKEN, or\n"
                    "FIRECREST_TOKEN_COMMAND, or FIRECREST_CLIENT_ID + FIRECREST_CLIENT_SECRET + AUTH_TOKEN_URL.",
        epilog=MOUNT_OPTIONS_HELP,
    )
    mount.add_argument("source", metavar="SYSTEM[:PATH]")
    mount.add_argument("mountpoint", metavar="MOUNTPOINT")
    _add_common(mount)
    mount.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    mount.set_defaults(handler=cmd_mount)

    demo = commands.add_parser(
        "demo", help="start the bundled local FirecREST server and mount it",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=MOUNT_OPTIONS_HELP,
    )
    demo.add_argument("mountpoint", metavar="MOUNTPOINT")
    demo.add_argument("--root", metavar="DIR", help="directory to serve (default: a fresh sample tree)")
    demo.add_argument("--max-ops-file-size", type=int, default=5 * 1024 * 1024, metavar="BYTES",
                      help="largest direct upload; direct downloads stop at about 3/4 of it (default 5242880)")
    demo.add_argument("--command-timeout", type=float, default=5.0, metavar="SEC",
                      help="the server's time limit for each command (default 5)")
    demo.add_argument("--job-queue-delay", type=float, default=0.5, metavar="SEC",
                      help="time a transfer job stays PENDING (default 0.5)")
    demo.add_argument("--job-run-delay", type=float, default=0.5, metavar="SEC",
                      help="time a transfer job stays RUNNING before its script runs (default 0.5)")
    demo.add_argument("--latency", type=float, default=0.0, metavar="SEC",
                      help="delay the server adds to every request, to feel a remote site (default 0)")
    demo.add_argument("--timezone", metavar="TZ",
                      help="the server's time zone, such as Europe/Zurich (default: this machine's)")
    _add_common(demo)
    demo.set_defaults(handler=cmd_demo)
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--debug", action="store_true", help="log debug output")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPTIONS",
                        help="comma-separated mount options, see below")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigurationError as exc:
        print(f"firecrest-fs: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"firecrest-fs: {describe_error(exc)}", file=sys.stderr)
        if getattr(args, "debug", False):
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
