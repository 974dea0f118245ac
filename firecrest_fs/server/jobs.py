"""A small in-process scheduler for transfer jobs, and the job scripts.

Each job waits PENDING for the queue delay, then RUNNING for the run delay plus its
script, then ends COMPLETED (exit 0), FAILED (other exit), CANCELLED or TIMEOUT.
Scripts run with bash in `<default work dir>/<username>`, with stdout and stderr
appended to the log files the transfer response names, like a Slurm batch job.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import tempfile
import time
import uuid
from typing import Any, Callable

from firecrest_fs.server.commands import quote
from firecrest_fs.server.config import TRANSFER_JOB_DIRECTIVES, TRANSFER_JOB_TIME_LIMIT, ServerConfig
from firecrest_fs.server.errors import ApiError
from firecrest_fs.server.knobs import Knobs

log = logging.getLogger(__name__)

# The PATH the real server sets for transfer jobs.
JOB_PATH = "/bin:/usr/bin/:/usr/local/bin/"

# Maximum number of jobs kept for `GET /compute/.../jobs`. The oldest finished jobs
# are forgotten first.
MAX_KEPT_JOBS = 10_000

TERMINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")

# A check run when the job starts, before its script. It raises ApiError to stop the job.
PreCheck = Callable[[], None]


@dataclasses.dataclass
class Job:
    """One transfer job and its scheduler state."""

    job_id: str
    name: str
    script: str
    working_directory: str
    output_log: str
    error_log: str
    user: str
    account: str | None
    submitted: float
    pre_check: PreCheck | None = None
    state: str = "PENDING"
    exit_code: int | None = None
    signal_number: int | None = None
    start: float | None = None
    end: float | None = None
    kill_request_user: str | None = None
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.state.split(" ")[0] in TERMINAL_STATES

    def to_json(self, cluster: str) -> dict[str, Any]:
        """Return the job in the shape of `GET /compute/{system}/jobs/{id}`."""
        now = time.time()
        elapsed = 0
        if self.start is not None:
            elapsed = int((self.end or now) - self.start)
        return {
            "jobId": self.job_id,
            "name": self.name,
            "status": {
                "state": self.state,
                "stateReason": "None",
                "exitCode": self.exit_code if self.exit_code is not None else 0,
                "interruptSignal": self.signal_number or 0,
            },
            "tasks": [],
            "time": {
                "elapsed": elapsed,
                "start": int(self.start) if self.start is not None else None,
                "end": int(self.end) if self.end is not None else None,
                "suspended": 0,
                "limit": TRANSFER_JOB_TIME_LIMIT,
            },
            "account": self.account or "demo",
            "allocationNodes": 1,
            "cluster": cluster,
            "group": None,
            "nodes": "localhost",
            "partition": "local",
            "killRequestUser": self.kill_request_user,
            "user": self.user,
            "workingDirectory": self.working_directory,
            "priority": 1,
        }

    def metadata_json(self) -> dict[str, Any]:
        return {
            "jobId": self.job_id,
            "script": self.script,
            "standardInput": "/dev/null",
            "standardOutput": self.output_log,
            "standardError": self.error_log,
        }


class Scheduler:
    """Runs transfer jobs as asyncio tasks and keeps their records."""

    def __init__(self, config: ServerConfig, knobs: Knobs, environment: dict[str, str]) -> None:
        self._config = config
        self._knobs = knobs
        self._environment = {**environment, "PATH": JOB_PATH}
        self._jobs: dict[str, Job] = {}
        self._next_id = 1
        self._script_directory = tempfile.mkdtemp(prefix="firecrest-fs-local-jobs-")

    def submit(self, name: str, script: str, account: str | None, pre_check: PreCheck | None = None) -> Job:
        """Queue a job script and return its record. The job starts after the queue delay."""
        unique_id = uuid.uuid4()
        directory = self._config.job_directory
        job = Job(
            job_id=str(self._next_id),
            name=name,
            script=script,
            working_directory=directory,
            output_log=f"{directory}/.f7t_file_handling_job_{unique_id}.log",
            error_log=f"{directory}/.f7t_file_handling_job_error_{unique_id}.log",
            user=self._config.username,
            account=account,
            submitted=time.time(),
            pre_check=pre_check,
        )
        self._next_id += 1
        self._jobs[job.job_id] = job
        self._forget_old_jobs()
        job.task = asyncio.get_running_loop().create_task(self._run(job), name=f"job-{job.job_id}")
        log.info("job %s (%s) submitted", job.job_id, name)
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def cancel(self, job_id: str) -> None:
        """Cancel a job like `scancel`, or raise ApiError 500 with scancel's error when it cannot be cancelled."""
        job = self._jobs.get(job_id)
        if job is None:
            # NOTE: the real server's response for an unknown id is not documented.
            # This is what scancel prints for one.
            raise ApiError(500, f"scancel: error: Kill job error on job id {job_id}: Invalid job id specified")
        if job.finished:
            raise ApiError(
                500,
                f"scancel: error: Kill job error on job id {job_id}: "
                "Job/step already completing or completed",
            )
        job.kill_request_user = self._config.username
        if job.task is not None:
            job.task.cancel()
        log.info("job %s cancelled", job_id)

    async def shutdown(self) -> None:
        """Cancel every unfinished job and remove the stored scripts."""
        tasks = [job.task for job in self._jobs.values() if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for name in os.listdir(self._script_directory):
            os.unlink(os.path.join(self._script_directory, name))
        os.rmdir(self._script_directory)

    async def _run(self, job: Job) -> None:
        try:
            await asyncio.sleep(self._knobs.settings.job_queue_delay)
            job.state = "RUNNING"
            job.start = time.time()
            await asyncio.sleep(self._knobs.settings.job_run_delay)
            if self._knobs.take_job_failure():
                self._finish_injected_failure(job)
                return
            async with asyncio.timeout(TRANSFER_JOB_TIME_LIMIT):
                exit_code = await self._run_script(job)
            self._finish(job, "COMPLETED" if exit_code == 0 else "FAILED", exit_code)
        except TimeoutError:
            self._finish(job, "TIMEOUT", 0)
        except asyncio.CancelledError:
            self._finish(job, f"CANCELLED by {os.getuid()}", 0, signal_number=int(signal.SIGTERM))
            raise
        except Exception:
            log.exception("job %s failed in the scheduler", job.job_id)
            self._finish(job, "FAILED", 1)
        finally:
            if job.process is not None and job.process.returncode is None:
                _kill_group(job.process)
                await job.process.wait()

    async def _run_script(self, job: Job) -> int:
        if job.pre_check is not None:
            try:
                await asyncio.to_thread(job.pre_check)
            except ApiError as exc:
                # Reported like a failing transfer script: a line in the error log,
                # no success line, and exit code 0.
                _append(job.output_log, "")
                _append(job.error_log, f"{time.strftime('%c')} Job refused before start: {exc.message}\n")
                return 0

        script_path = os.path.join(self._script_directory, f"job-{job.job_id}.sh")
        with open(script_path, "w", encoding="utf-8") as script_file:
            script_file.write(job.script)

        environment = {**self._environment, "SLURM_JOB_ID": job.job_id}
        with open(job.output_log, "ab") as stdout, open(job.error_log, "ab") as stderr:
            job.process = await asyncio.create_subprocess_exec(
                "bash",
                script_path,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=job.working_directory,
                env=environment,
                start_new_session=True,
            )
        return await job.process.wait()

    def _finish_injected_failure(self, job: Job) -> None:
        _append(job.output_log, "")
        _append(job.error_log, "Job failed by an injected fault of the local server.\n")
        log.info("job %s failed by an injected fault", job.job_id)
        self._finish(job, "FAILED", 1)

    def _finish(self, job: Job, state: str, exit_code: int, signal_number: int | None = None) -> None:
        job.state = state
        job.exit_code = exit_code
        job.signal_number = signal_number
        job.end = time.time()
        if job.start is None:
            job.start = job.end
        log.info("job %s ended %s with exit code %d", job.job_id, state, exit_code)

    def _forget_old_jobs(self) -> None:
        while len(self._jobs) > MAX_KEPT_JOBS:
            oldest = next((job for job in self._jobs.values() if job.finished), None)
            if oldest is None:
                return
            del self._jobs[oldest.job_id]


def _kill_group(process: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as log_file:
        log_file.write(text)


# -- Job scripts -----------------------------------------------------------------


def _script(job_title: str, command: str, success_line: str, failure_text: str) -> str:
    """Build a transfer job script that behaves like the real server's.

    On failure the real scripts print an error to stderr and then `exit $?`, which
    is the status of that echo (0). So a failed operation still ends COMPLETED with
    exit code 0, and only the success line in the output log proves success.
    """
    directives = "\n".join(TRANSFER_JOB_DIRECTIVES)
    return f"""#!/bin/bash
{directives}

echo "$(date -u) {job_title} Job (id:${{SLURM_JOB_ID:-unknown}})"

{command}
command_status=$?
if [ "$command_status" -eq 0 ]; then
    echo "$(date -u) {success_line}"
    exit 0
fi
echo "$(date -u) {failure_text} exit code:$command_status" >&2
exit $?
"""


def move_script(source: str, target: str) -> str:
    return _script(
        "Move Files",
        f"mv -- {quote(source)} {quote(target)}",
        "Files were successfully moved.",
        "Unable to move files",
    )


def copy_script(source: str, target: str, dereference: bool) -> str:
    link_option = "L" if dereference else "d"
    return _script(
        "Copy Files",
        f"cp --force -R{link_option} --preserve=all -- {quote(source)} {quote(target)}",
        "Files were successfully copied.",
        "Unable to copy files",
    )


def delete_script(path: str) -> str:
    return _script(
        "Delete Files",
        f"rm -R -- {quote(path)}",
        "Files were successfully deleted.",
        "Unable to delete files",
    )


def compress_script(tar_command: str) -> str:
    return _script("Compress Files", tar_command, "Files were successfully compressed.", "Unable to compress files")


def extract_script(tar_command: str) -> str:
    return _script("Extract Files", tar_command, "Files were successfully extracted.", "Unable to extract files")
