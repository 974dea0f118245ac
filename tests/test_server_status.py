"""The local server's status endpoints and its command line checks."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys

import pytest

from firecrest_fs.server.launch import PACKAGE_PARENT, LocalServer, LocalServerError
from server_support import TEST_MAX_OPS_FILE_SIZE, api, api_server  # noqa: F401 (fixtures)


def test_systems_shape(api, api_server):
    response = api.http.get("/status/systems", headers=api.headers)

    assert response.status_code == 200
    (system,) = response.json()["systems"]
    assert system["name"] == api_server.system
    assert system["ssh"]["timeout"]["commandExecution"] == 1
    assert system["fileSystems"] == [
        {"path": os.path.realpath(api_server.root), "dataType": "users", "defaultWorkDir": False},
        {"path": os.path.realpath(api_server.workdir), "dataType": "scratch", "defaultWorkDir": True},
    ]
    operation = system["dataOperation"]
    assert operation["max_ops_file_size"] == TEST_MAX_OPS_FILE_SIZE
    assert operation["data_transfer"] is None
    assert all("{account}" not in directive for directive in operation["datatransfer_jobs_directives"])
    healthy = {(entry["serviceType"], entry.get("path")) for entry in system["servicesHealth"] if entry["healthy"]}
    assert ("filesystem", os.path.realpath(api_server.root)) in healthy


def test_userinfo_is_running_user(api):
    response = api.get("status/userinfo")

    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {"id": str(os.getuid()), "name": pwd.getpwuid(os.getuid()).pw_name}
    assert body["group"] == {"id": str(os.getgid()), "name": grp.getgrgid(os.getgid()).gr_name}
    assert {"id": str(os.getgid()), "name": grp.getgrgid(os.getgid()).gr_name} in body["groups"]
    assert body["accounts"] == [{"name": "demo", "default": True}]


def test_userinfo_unknown_system_is_404(api):
    response = api.http.get("/status/other/userinfo", headers=api.headers)

    assert response.status_code == 404
    assert response.json()["message"] == "System not found"


def run_server_command(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": PACKAGE_PARENT, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "firecrest_fs.server", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )


def test_command_line_rejects_non_loopback_host(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "work").mkdir()
    secrets = {"F7T_LOCAL_CLIENT_ID": "id", "F7T_LOCAL_CLIENT_SECRET": "secret"}

    result = run_server_command(
        "--root", str(tmp_path / "root"), "--workdir", str(tmp_path / "work"), "--host", "0.0.0.0", env=secrets
    )

    assert result.returncode == 2
    assert "not a loopback address" in result.stderr


def test_command_line_requires_secrets_in_environment(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "work").mkdir()
    environment = {"F7T_LOCAL_CLIENT_ID": "", "F7T_LOCAL_CLIENT_SECRET": ""}

    result = run_server_command("--root", str(tmp_path / "root"), "--workdir", str(tmp_path / "work"), env=environment)

    assert result.returncode == 2
    assert "F7T_LOCAL_CLIENT_SECRET" in result.stderr


def test_command_line_rejects_nested_directories(tmp_path):
    (tmp_path / "root" / "work").mkdir(parents=True)
    secrets = {"F7T_LOCAL_CLIENT_ID": "id", "F7T_LOCAL_CLIENT_SECRET": "secret"}

    result = run_server_command(
        "--root", str(tmp_path / "root"), "--workdir", str(tmp_path / "root" / "work"), env=secrets
    )

    assert result.returncode == 2
    assert "must not be inside one another" in result.stderr


def test_launcher_reports_early_exit(tmp_path):
    server = LocalServer(tmp_path / "missing-root", tmp_path)

    with pytest.raises(LocalServerError) as raised:
        server.start(timeout=30)

    assert "is not an existing directory" in str(raised.value)
    assert not server.running
