"""Configuration of the local server: the file systems it serves and its runtime settings."""

from __future__ import annotations

import dataclasses
import math
import os
import pwd

DEFAULT_MAX_OPS_FILE_SIZE = 5 * 1024 * 1024
DEFAULT_COMMAND_TIMEOUT = 5.0
DEFAULT_JOB_QUEUE_DELAY = 0.5
DEFAULT_JOB_RUN_DELAY = 0.5
DEFAULT_TOKEN_LIFETIME = 300

# The value the real server puts in F7T-AppVersion when built from source.
APP_VERSION = "2.x.x"

# Scheduler directives put at the top of every transfer job script. They contain no
# "{account}" placeholder, so transfer requests do not need an account.
TRANSFER_JOB_DIRECTIVES = ["#SBATCH --nodes=1", "#SBATCH --time=0-00:15:00"]

# Wall-clock limit of a transfer job in seconds, matching the --time directive above.
TRANSFER_JOB_TIME_LIMIT = 15 * 60


@dataclasses.dataclass(frozen=True)
class FileSystem:
    """One configured file system of the system, as `GET /status/systems` lists it."""

    path: str
    data_type: str
    default_work_dir: bool


@dataclasses.dataclass
class RuntimeSettings:
    """Settings that `PUT /_local/settings` can change while the server runs.

    Times are in seconds. Readers take the current value at the start of each
    request or job, so a change applies to the next one.
    """

    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    job_queue_delay: float = DEFAULT_JOB_QUEUE_DELAY
    job_run_delay: float = DEFAULT_JOB_RUN_DELAY
    latency: float = 0.0
    token_lifetime: int = DEFAULT_TOKEN_LIFETIME


@dataclasses.dataclass
class ServerConfig:
    """Fixed configuration of one server process."""

    root: str
    workdir: str
    system: str
    max_ops_file_size: int
    timezone: str | None
    client_id: str
    client_secret: str
    settings: RuntimeSettings
    username: str = dataclasses.field(default_factory=lambda: current_username())

    @property
    def file_systems(self) -> list[FileSystem]:
        return [
            FileSystem(path=self.root, data_type="users", default_work_dir=False),
            FileSystem(path=self.workdir, data_type="scratch", default_work_dir=True),
        ]

    @property
    def job_directory(self) -> str:
        """Working directory of transfer jobs, where their log files go."""
        return os.path.join(self.workdir, self.username)


def current_username() -> str:
    """Return the name of the user running the server, who is also the API user."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def format_seconds(value: float) -> str:
    """Format a duration for the `timeout` command and for JSON: `5` rather than `5.0`."""
    return f"{value:g}"


def whole_seconds(value: float) -> int:
    """Round a duration up to whole seconds, the unit of the real server's timeout settings.

    The OpenAPI document types them as integers. Rounded up, the reported value is
    never below the limit the server applies, so a client that sizes its waits from it
    does not give up before the server does.
    """
    return math.ceil(value)
