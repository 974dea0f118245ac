"""Status endpoints and the compute endpoints that report transfer jobs."""

from __future__ import annotations

import datetime
import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from firecrest_fs.server.app import known_system, server_state
from firecrest_fs.server.config import TRANSFER_JOB_DIRECTIVES, whole_seconds
from firecrest_fs.server.errors import ApiError

liveness_router = APIRouter()
router = APIRouter()
compute_router = APIRouter()

JOB_NOT_FOUND_MESSAGE = "Job not found."
JobId = Annotated[str, Path(pattern=r"^[a-zA-Z0-9]+$", description="Job id")]

# Time windows of `GET /compute/{system}/jobs`, in seconds.
TIME_WINDOWS = {"1h": 3600, "8h": 8 * 3600, "24h": 24 * 3600, "3d": 3 * 86400, "7d": 7 * 86400}


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


@liveness_router.get("/status/liveness/")
async def get_liveness(request: Request) -> dict[str, Any]:
    system = server_state(request).config.system
    return {"healthcheckRuns": {system: _now_iso()}, "lastUpdate": 0}


@router.get("/status/systems")
async def get_systems(request: Request) -> dict[str, Any]:
    config = server_state(request).config
    checked = _now_iso()
    command_timeout = whole_seconds(config.settings.command_timeout)
    health = [
        {"serviceType": "ssh", "lastChecked": checked, "latency": 0.0, "healthy": True, "message": None},
        {"serviceType": "scheduler", "lastChecked": checked, "latency": 0.0, "healthy": True, "message": None},
    ] + [
        {
            "serviceType": "filesystem",
            "lastChecked": checked,
            "latency": 0.0,
            "healthy": True,
            "message": None,
            "path": file_system.path,
        }
        for file_system in config.file_systems
    ]
    system = {
        "name": config.system,
        "ssh": {
            "host": "127.0.0.1",
            "port": 22,
            "proxyHost": None,
            "proxyPort": None,
            "maxClients": 100,
            "timeout": {
                "connection": 5,
                "login": 5,
                "commandExecution": command_timeout,
                "idleTimeout": 60,
                "keepAlive": 5,
            },
        },
        "scheduler": {
            "type": "slurm",
            "connectionMode": "ssh",
            "version": "local",
            "apiUrl": None,
            "apiVersion": None,
            "timeout": 10,
        },
        "servicesHealth": health,
        "probing": {
            "services": {"ssh": {"timeout": 10}, "scheduler": {"timeout": 10}, "filesystem": {"timeout": 10}},
            "intervalCheck": 60,
        },
        "lastHealthCheck": checked,
        "fileSystems": [
            {"path": fs.path, "dataType": fs.data_type, "defaultWorkDir": fs.default_work_dir}
            for fs in config.file_systems
        ],
        # Plain (not camelCase) keys, as the real server serialises this object.
        "dataOperation": {
            "datatransfer_jobs_directives": list(TRANSFER_JOB_DIRECTIVES),
            "max_ops_file_size": config.max_ops_file_size,
            "data_transfer": None,
        },
    }
    return {"systems": [system]}


@router.get("/status/{system_name}/userinfo")
async def get_userinfo(request: Request, system: str = Depends(known_system)) -> dict[str, Any]:
    result = await server_state(request).runner.run_checked("id")
    return {**parse_id_output(result.stdout_text), "accounts": [{"name": "demo", "default": True}]}


def parse_id_output(output: str) -> dict[str, Any]:
    """Parse `id` output such as `uid=1000(u) gid=100(users) groups=100(users),27(sudo)`."""
    fields = dict(part.split("=", 1) for part in output.split() if "=" in part)
    entry = re.compile(r"(\d+)(?:\((.*?)\))?")

    def identified(text: str) -> dict[str, str]:
        match = entry.fullmatch(text)
        if match is None:
            raise ApiError(500, f"Unable to parse the output of id: {output.strip()}")
        return {"id": match.group(1), "name": match.group(2) or match.group(1)}

    groups_text = fields.get("groups", fields.get("gid", ""))
    return {
        "user": identified(fields.get("uid", "")),
        "group": identified(fields.get("gid", "")),
        "groups": [identified(group) for group in groups_text.split(",") if group],
    }


# -- Compute ---------------------------------------------------------------------


@compute_router.get("/compute/{system_name}/jobs")
async def get_jobs(
    request: Request,
    system: str = Depends(known_system),
    allusers: bool = False,
    account: str | None = None,
    name: Annotated[str | None, Query(max_length=235)] = None,
    time_window: Annotated[str, Query(pattern=r"^(1h|8h|24h|3d|7d)$")] = "24h",
) -> dict[str, Any]:
    since = time.time() - TIME_WINDOWS[time_window]
    jobs = [
        job.to_json(system)
        for job in server_state(request).scheduler.jobs()
        if job.submitted >= since
        and (account is None or job.account == account)
        and (name is None or job.name == name)
    ]
    return {"jobs": jobs}


@compute_router.get("/compute/{system_name}/jobs/{job_id}")
async def get_job(request: Request, job_id: JobId, system: str = Depends(known_system)) -> dict[str, Any]:
    job = server_state(request).scheduler.get(job_id)
    if job is None:
        raise ApiError(404, JOB_NOT_FOUND_MESSAGE)
    return {"jobs": [job.to_json(system)]}


@compute_router.get("/compute/{system_name}/jobs/{job_id}/metadata")
async def get_job_metadata(request: Request, job_id: JobId, system: str = Depends(known_system)) -> dict[str, Any]:
    job = server_state(request).scheduler.get(job_id)
    if job is None:
        raise ApiError(404, JOB_NOT_FOUND_MESSAGE)
    return {"jobs": [job.metadata_json()]}


@compute_router.delete("/compute/{system_name}/jobs/{job_id}", status_code=204)
async def delete_job(request: Request, job_id: JobId, system: str = Depends(known_system)) -> Response:
    server_state(request).scheduler.cancel(job_id)
    return Response(status_code=204)
