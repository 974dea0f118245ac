"""The local server's transfer jobs and the compute endpoints that report them."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from server_support import api, api_server, area, error_message  # noqa: F401 (fixtures)


def submit(api, method: str, endpoint: str, **kwargs) -> dict:
    response = api.request(method, endpoint, **kwargs)
    assert response.status_code in (200, 201), response.text
    return response.json()["transferJob"]


def logs(transfer_job: dict) -> tuple[str, str]:
    output = Path(transfer_job["logs"]["outputLog"]).read_text()
    error = Path(transfer_job["logs"]["errorLog"]).read_text()
    return output, error


@pytest.fixture
def fast_jobs(api_server):
    api_server.update_settings(job_queue_delay=0.05, job_run_delay=0.05)
    yield
    api_server.update_settings(job_queue_delay=0.05, job_run_delay=0.05)


def test_mv_job_completes_with_success_line(api, area, fast_jobs):
    (area / "a").write_bytes(b"payload")

    transfer_job = submit(api, "POST", "filesystem/transfer/mv", json={"sourcePath": str(area / "a"), "targetPath": str(area / "b")})
    job = api.wait_for_job(transfer_job["jobId"])

    assert job["status"]["state"] == "COMPLETED"
    assert job["status"]["exitCode"] == 0
    assert job["name"] == "MoveFiles"
    output, error = logs(transfer_job)
    assert "Files were successfully moved." in output
    assert error == ""
    assert (area / "b").read_bytes() == b"payload"
    assert not (area / "a").exists()


def test_transfer_response_shape(api, api_server, area, fast_jobs):
    (area / "a").write_text("x")

    response = api.post("filesystem/transfer/mv", {"path": str(area / "a"), "targetPath": str(area / "b")})

    assert response.status_code == 201
    transfer_job = response.json()["transferJob"]
    assert set(transfer_job) == {"jobId", "system", "workingDirectory", "logs"}
    assert transfer_job["system"] == api_server.system
    work_directory = transfer_job["workingDirectory"]
    assert os.path.dirname(work_directory) == os.path.realpath(api_server.workdir)
    assert transfer_job["logs"]["outputLog"].startswith(f"{work_directory}/.f7t_file_handling_job_")
    assert transfer_job["logs"]["errorLog"].startswith(f"{work_directory}/.f7t_file_handling_job_error_")
    api.wait_for_job(transfer_job["jobId"])


def test_failed_mv_still_completes_with_exit_code_0(api, area, fast_jobs):
    transfer_job = submit(
        api, "POST", "filesystem/transfer/mv", json={"sourcePath": str(area / "missing"), "targetPath": str(area / "b")}
    )
    job = api.wait_for_job(transfer_job["jobId"])

    assert job["status"]["state"] == "COMPLETED"
    assert job["status"]["exitCode"] == 0
    output, error = logs(transfer_job)
    assert "Files were successfully moved." not in output
    assert "Unable to move files" in error
    assert "No such file or directory" in error
    assert not (area / "b").exists()


def test_mv_into_existing_directory(api, area, fast_jobs):
    (area / "file").write_text("x")
    (area / "dir").mkdir()

    transfer_job = submit(api, "POST", "filesystem/transfer/mv", json={"sourcePath": str(area / "file"), "targetPath": str(area / "dir")})
    api.wait_for_job(transfer_job["jobId"])

    assert (area / "dir" / "file").read_text() == "x"


def test_cp_job_copies_tree_and_links(api, area, fast_jobs):
    (area / "src" / "sub").mkdir(parents=True)
    (area / "src" / "sub" / "f").write_bytes(b"data")
    os.symlink("sub/f", area / "src" / "link")
    os.utime(area / "src" / "sub" / "f", (1_000_000_000, 1_000_000_000))

    transfer_job = submit(api, "POST", "filesystem/transfer/cp", json={"sourcePath": str(area / "src"), "targetPath": str(area / "dst")})
    job = api.wait_for_job(transfer_job["jobId"])

    assert job["status"]["state"] == "COMPLETED"
    assert "Files were successfully copied." in logs(transfer_job)[0]
    assert (area / "dst" / "sub" / "f").read_bytes() == b"data"
    assert int((area / "dst" / "sub" / "f").stat().st_mtime) == 1_000_000_000
    assert os.readlink(area / "dst" / "link") == "sub/f"


def test_rm_job_returns_200_and_deletes(api, area, fast_jobs):
    (area / "tree" / "sub").mkdir(parents=True)
    (area / "tree" / "sub" / "f").write_text("x")

    response = api.delete("filesystem/transfer/rm", path=str(area / "tree"))

    assert response.status_code == 200
    transfer_job = response.json()["transferJob"]
    api.wait_for_job(transfer_job["jobId"])
    assert "Files were successfully deleted." in logs(transfer_job)[0]
    assert not (area / "tree").exists()


def test_compress_and_extract_jobs(api, area, fast_jobs):
    (area / "src").mkdir()
    (area / "src" / "f.txt").write_text("content")
    (area / "out").mkdir()
    archive = area / "a.tar.xz"

    compress_job = submit(
        api, "POST", "filesystem/transfer/compress",
        json={"sourcePath": str(area / "src"), "targetPath": str(archive), "compression": "xz"},
    )
    compress_record = api.wait_for_job(compress_job["jobId"])
    extract_job = submit(
        api, "POST", "filesystem/transfer/extract",
        json={"sourcePath": str(archive), "targetPath": str(area / "out"), "compression": "xz"},
    )
    extract_record = api.wait_for_job(extract_job["jobId"])

    assert compress_record["name"] == "CompressFiles"
    assert "Files were successfully compressed." in logs(compress_job)[0]
    assert extract_record["name"] == "CompressFiles"
    assert "Files were successfully extracted." in logs(extract_job)[0]
    assert (area / "out" / "src" / "f.txt").read_text() == "content"


def test_job_states_follow_delays(api, api_server, area):
    (area / "a").write_text("x")
    api_server.update_settings(job_queue_delay=1.0, job_run_delay=1.0)
    try:
        transfer_job = submit(api, "POST", "filesystem/transfer/mv", json={"sourcePath": str(area / "a"), "targetPath": str(area / "b")})
        job_id = transfer_job["jobId"]
        first = api.get(f"compute/jobs/{job_id}").json()["jobs"][0]["status"]["state"]
        time.sleep(1.5)
        second = api.get(f"compute/jobs/{job_id}").json()["jobs"][0]["status"]["state"]
        job = api.wait_for_job(job_id)
    finally:
        api_server.update_settings(job_queue_delay=0.05, job_run_delay=0.05)

    assert first == "PENDING"
    assert second == "RUNNING"
    assert job["status"]["state"] == "COMPLETED"
    assert not (area / "a").exists()


def test_cancel_pending_job(api, api_server, area):
    (area / "a").write_text("x")
    api_server.update_settings(job_queue_delay=5)
    try:
        transfer_job = submit(api, "POST", "filesystem/transfer/mv", json={"sourcePath": str(area / "a"), "targetPath": str(area / "b")})
        response = api.delete(f"compute/jobs/{transfer_job['jobId']}")
        job = api.wait_for_job(transfer_job["jobId"])
    finally:
        api_server.update_settings(job_queue_delay=0.05)

    assert response.status_code == 204
    assert job["status"]["state"].startswith("CANCELLED")
    assert (area / "a").exists()
    assert not os.path.exists(transfer_job["logs"]["outputLog"])


def test_cancel_finished_job_is_500(api, area, fast_jobs):
    (area / "a").write_text("x")
    transfer_job = submit(api, "POST", "filesystem/transfer/mv", json={"sourcePath": str(area / "a"), "targetPath": str(area / "b")})
    api.wait_for_job(transfer_job["jobId"])

    response = api.delete(f"compute/jobs/{transfer_job['jobId']}")

    assert response.status_code == 500
    assert "Job/step already completing or completed" in error_message(response)


def test_job_lookup_errors(api):
    unknown = api.get("compute/jobs/999999")
    invalid = api.get("compute/jobs/1.2")

    assert unknown.status_code == 404
    assert error_message(unknown) == "Job not found."
    assert invalid.status_code == 400
    assert invalid.json()["errorType"] == "validation"


def test_job_list_contains_submitted_job(api, area, fast_jobs):
    (area / "a").write_text("x")
    transfer_job = submit(api, "POST", "filesystem/transfer/mv", json={"sourcePath": str(area / "a"), "targetPath": str(area / "b")})
    api.wait_for_job(transfer_job["jobId"])

    response = api.get("compute/jobs")

    assert response.status_code == 200
    records = {job["jobId"]: job for job in response.json()["jobs"]}
    assert transfer_job["jobId"] in records
    record = records[transfer_job["jobId"]]
    assert record["status"] == {"state": "COMPLETED", "stateReason": "None", "exitCode": 0, "interruptSignal": 0}
    assert set(record["time"]) == {"elapsed", "start", "end", "suspended", "limit"}
    assert record["workingDirectory"] == transfer_job["workingDirectory"]


def test_injected_job_failure(api, api_server, area, fast_jobs):
    (area / "a").write_text("x")
    api_server.set_faults([{"kind": "job_fail", "count": 1}])
    try:
        failing = submit(api, "POST", "filesystem/transfer/mv", json={"sourcePath": str(area / "a"), "targetPath": str(area / "b")})
        failed = api.wait_for_job(failing["jobId"])
        passing = submit(api, "POST", "filesystem/transfer/mv", json={"sourcePath": str(area / "a"), "targetPath": str(area / "c")})
        passed = api.wait_for_job(passing["jobId"])
    finally:
        api_server.clear_faults()

    assert failed["status"]["state"] == "FAILED"
    assert failed["status"]["exitCode"] == 1
    assert passed["status"]["state"] == "COMPLETED"
    assert (area / "c").exists()
    assert not (area / "b").exists()


def test_transfer_extract_rechecks_archive_at_start(api, api_server, area, tmp_path):
    # The archive is safe at submission. While the job is queued, a symlink to
    # outside appears under the target, so the job must not extract.
    outside = tmp_path / "outside"
    outside.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        member = tarfile.TarInfo("sub/planted")
        member.size = 4
        tar.addfile(member, io.BytesIO(b"evil"))
    (area / "a.tar").write_bytes(buffer.getvalue())
    (area / "out").mkdir()
    api_server.update_settings(job_queue_delay=0.8)
    try:
        transfer_job = submit(
            api, "POST", "filesystem/transfer/extract",
            json={"sourcePath": str(area / "a.tar"), "targetPath": str(area / "out"), "compression": "none"},
        )
        os.symlink(outside, area / "out" / "sub")
        job = api.wait_for_job(transfer_job["jobId"])
    finally:
        api_server.update_settings(job_queue_delay=0.05)

    assert job["status"]["state"] == "COMPLETED"
    output, error = logs(transfer_job)
    assert "Files were successfully extracted." not in output
    assert "symlink" in error
    assert not (outside / "planted").exists()


@pytest.mark.parametrize("endpoint", ["filesystem/transfer/upload", "filesystem/transfer/download"])
def test_staging_without_data_transfer_is_500(api, area, endpoint):
    target = str(area / "big.bin")
    body = {"path": target, "transferDirectives": {"transferMethod": "s3", "fileSize": 10_000_000}}
    group, rest = endpoint.split("/", 1)

    response = api.post(endpoint, body)
    unauthenticated = api.http.post(f"/{group}/{api.system}/{rest}", json=body)
    unknown_system = api.http.post(f"/{group}/nosuchsystem/{rest}", json=body, headers=api.headers)

    # /status/systems reports no data transfer service, and a real server without one returns 500.
    assert response.status_code == 500
    assert "No data transfer service is configured" in error_message(response)
    assert unauthenticated.status_code == 401
    assert unknown_system.status_code == 404
    assert not os.path.exists(target)
