"""pyfirecrest, the official FirecREST Python client, against the local server.

pyfirecrest's synchronous client (`firecrest.v2.Firecrest`) authenticates with the
client-credentials flow at the server's token endpoint and calls every endpoint it
implements that the local server serves. Each test checks the result on disk, not
only what pyfirecrest returns. The server's limit is the real default of 5 MiB,
because pyfirecrest reads job logs with `ops/view` without `size`, and the real
server rejects that default `size` of 5 MiB under a smaller limit.

Some pyfirecrest methods are not covered because the local server does not serve
their endpoints. Uploads and downloads of 1 MiB or more are staged through S3
(`transfer/upload`, `transfer/download`), and the tests only check that they fail
with 500, as on a real server without a data transfer service. Job submission and
attach (`POST /compute/{system}/jobs`, `PUT .../attach`), `nodes`, `partitions` and
`reservations` are not called.
"""

from __future__ import annotations

import concurrent.futures
import grp
import hashlib
import io
import itertools
import os
import pwd
import stat
import tarfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from firecrest import ClientCredentialsAuth, UnexpectedStatusException
from firecrest.FirecrestException import TransferJobFailedException, TransferJobTimeoutException
from firecrest.v2 import Firecrest

from firecrest_fs.server.launch import LocalServer
from server_support import start_server

MAX_OPS_FILE_SIZE = 5 * 1024 * 1024
SETTINGS: dict[str, Any] = dict(
    max_ops_file_size=MAX_OPS_FILE_SIZE,
    command_timeout=3,
    job_queue_delay=0.05,
    job_run_delay=0.05,
)

# Seconds for one HTTP request of pyfirecrest, whose default is no timeout.
REQUEST_TIMEOUT = 30.0
# Seconds pyfirecrest may wait for a transfer job before it cancels the job and raises.
JOB_TIMEOUT = 30.0
# pyfirecrest's compress and extract wait for their transfer jobs without a timeout, so
# the tests run them in a thread and fail after this many seconds.
CALL_DEADLINE = 60.0

OPS = "/filesystem/{system_name}/ops"
TRANSFER = "/filesystem/{system_name}/transfer"

_folder_numbers = itertools.count()


@pytest.fixture(scope="module")
def f7t_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """One server for the module, with the 5 MiB limit and quick jobs."""
    server = start_server(tmp_path_factory.mktemp("pyfirecrest"), **SETTINGS)
    try:
        yield server
    finally:
        server.stop()


def make_client(server: LocalServer, client_auth_method: str = "client_secret_post") -> Firecrest:
    auth = ClientCredentialsAuth(
        server.client_id,
        server.client_secret,
        server.token_url,
        # The server rejects tokens with less than 30 s left; pyfirecrest's default margin is 10 s.
        min_token_validity=60,
        client_auth_method=client_auth_method,
    )
    auth.timeout = REQUEST_TIMEOUT
    client = Firecrest(firecrest_url=server.url, authorization=auth)
    client.timeout = REQUEST_TIMEOUT
    # pyfirecrest retries a 429 without end by default; the server never sends one here.
    client.num_retries_rate_limit = 0
    return client


@pytest.fixture(scope="module")
def client(f7t_server: LocalServer) -> Iterator[Firecrest]:
    firecrest_client = make_client(f7t_server)
    yield firecrest_client
    firecrest_client.close_session()


@pytest.fixture
def system(f7t_server: LocalServer) -> str:
    return f7t_server.system


@pytest.fixture(autouse=True)
def clean_knobs(f7t_server: LocalServer) -> Iterator[None]:
    f7t_server.clear_faults()
    f7t_server.reset_counters()
    yield
    f7t_server.clear_faults()
    f7t_server.update_settings(job_queue_delay=SETTINGS["job_queue_delay"])


@pytest.fixture
def folder(f7t_server: LocalServer) -> Path:
    """A fresh, empty directory inside the served root, for one test."""
    directory = Path(f7t_server.root) / f"folder{next(_folder_numbers)}"
    directory.mkdir()
    return directory


def call_with_deadline(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a pyfirecrest call that waits for a job without a timeout, and fail after CALL_DEADLINE.

    A call still waiting then keeps polling in its thread until the module's server
    stops, when its next request fails.
    """
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(function, *args, **kwargs).result(timeout=CALL_DEADLINE)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"{function.__name__} did not return within {CALL_DEADLINE} s")
    finally:
        pool.shutdown(wait=False)


def status_of(raised: pytest.ExceptionInfo[UnexpectedStatusException]) -> int:
    return raised.value.responses[-1].status_code


def message_of(raised: pytest.ExceptionInfo[UnexpectedStatusException]) -> str:
    return raised.value.responses[-1].json()["message"]


def timeout_fault(method: str, route: str) -> dict[str, Any]:
    """Build a fault rule: the next request to `route` gets 408, as a command over its time limit does."""
    return {"method": method, "route": route, "kind": "status", "status": 408, "count": 1}


def archive_members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path, mode="r:*") as archive:
        return {member.name: member for member in archive.getmembers()}


def make_tree(root: Path) -> Path:
    """Create `root/src` with a file of mode 640, a subfolder with a file, and a relative symlink."""
    source = root / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"alpha\n")
    (source / "a.txt").chmod(0o640)
    (source / "sub" / "b.bin").write_bytes(bytes(range(256)))
    (source / "link").symlink_to("a.txt")
    return source


def output_log_text(job_info: dict[str, Any]) -> str:
    return Path(job_info["transferJob"]["logs"]["outputLog"]).read_text()


# -- Status ------------------------------------------------------------------------------


def test_systems(client, f7t_server):
    systems = client.systems()

    assert [entry["name"] for entry in systems] == [f7t_server.system]
    file_systems = [entry["path"] for entry in systems[0]["fileSystems"]]
    assert file_systems == [os.path.realpath(f7t_server.root), os.path.realpath(f7t_server.workdir)]
    assert systems[0]["dataOperation"]["max_ops_file_size"] == MAX_OPS_FILE_SIZE
    # pyfirecrest reports the source-build version header "2.x.x" as "2".
    assert client.server_version() == "2"


def test_basic_client_authentication(f7t_server):
    basic_client = make_client(f7t_server, client_auth_method="client_secret_basic")
    try:
        systems = basic_client.systems()
    finally:
        basic_client.close_session()

    assert systems[0]["name"] == f7t_server.system


def test_userinfo(client, system):
    info = client.userinfo(system)

    assert info["user"] == {"id": str(os.getuid()), "name": pwd.getpwuid(os.getuid()).pw_name}
    assert info["group"] == {"id": str(os.getgid()), "name": grp.getgrgid(os.getgid()).gr_name}
    assert str(os.getgid()) in [group["id"] for group in info["groups"]]


# -- Reading -------------------------------------------------------------------------------


def test_list_files(client, system, folder):
    (folder / "a.txt").write_bytes(b"abc")
    (folder / "a.txt").chmod(0o640)
    (folder / ".hidden").write_bytes(b"h")
    (folder / "sub").mkdir()
    (folder / "sub" / "inner.bin").write_bytes(b"12345")
    (folder / "link").symlink_to("sub")
    modified = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime((folder / "a.txt").stat().st_mtime))

    entries = {entry["name"]: entry for entry in client.list_files(system, str(folder))}

    assert set(entries) == {"a.txt", "sub", "link"}
    assert entries["a.txt"]["type"] == "-"
    assert entries["a.txt"]["size"] == "3"
    assert entries["a.txt"]["permissions"] == "rw-r-----"
    assert entries["a.txt"]["lastModified"] == modified
    assert entries["a.txt"]["user"] == pwd.getpwuid(os.getuid()).pw_name
    assert entries["sub"]["type"] == "d"
    assert entries["link"]["type"] == "l"
    assert entries["link"]["linkTarget"] == "sub"


def test_list_files_options(client, system, folder):
    (folder / ".hidden").write_bytes(b"h")
    (folder / "sub").mkdir()
    (folder / "sub" / "inner.bin").write_bytes(b"12345")
    (folder / "link").symlink_to("sub")

    hidden = {entry["name"] for entry in client.list_files(system, str(folder), show_hidden=True)}
    recursive = {entry["name"]: entry for entry in client.list_files(system, str(folder), recursive=True)}
    dereferenced = {entry["name"]: entry for entry in client.list_files(system, str(folder), dereference=True)}
    numeric = {entry["name"]: entry for entry in client.list_files(system, str(folder), numeric_uid=True)}

    assert hidden == {".hidden", "sub", "link"}
    assert recursive["sub/inner.bin"]["size"] == "5"
    assert dereferenced["link"]["type"] == "d"
    assert dereferenced["link"]["linkTarget"] is None
    assert numeric["sub"]["user"] == str(os.getuid())
    assert numeric["sub"]["group"] == str(os.getgid())


def test_list_files_errors(client, system, folder):
    with pytest.raises(UnexpectedStatusException) as missing:
        client.list_files(system, str(folder / "missing"))
    with pytest.raises(UnexpectedStatusException) as outside:
        client.list_files(system, "/etc")

    assert status_of(missing) == 404
    assert "No such file or directory" in message_of(missing)
    assert status_of(outside) == 400


def test_stat(client, system, folder):
    (folder / "f").write_bytes(b"12345678")
    (folder / "link").symlink_to("f")
    on_disk = os.lstat(folder / "f")

    result = client.stat(system, str(folder / "f"))
    link = client.stat(system, str(folder / "link"))
    followed = client.stat(system, str(folder / "link"), dereference=True)

    assert result["mode"] == on_disk.st_mode
    assert result["size"] == 8
    assert result["ino"] == on_disk.st_ino
    assert result["uid"] == on_disk.st_uid
    assert result["gid"] == on_disk.st_gid
    assert result["nlink"] == on_disk.st_nlink
    assert result["mtime"] == int(on_disk.st_mtime)
    assert stat.S_ISLNK(link["mode"])
    assert link["ino"] == os.lstat(folder / "link").st_ino
    assert stat.S_ISREG(followed["mode"])
    assert followed["ino"] == on_disk.st_ino


def test_view_head_tail(client, system, folder):
    lines = [f"line {number}\n" for number in range(1, 21)]
    path = folder / "lines.txt"
    path.write_text("".join(lines))
    name = str(path)

    head = client.head(system, name)
    head_three = client.head(system, name, num_lines=3)
    head_bytes = client.head(system, name, num_bytes=4)
    head_trimmed = client.head(system, name, num_lines=18, exclude_trailing=True)
    tail_two = client.tail(system, name, num_lines=2)
    tail_bytes = client.tail(system, name, num_bytes=3)
    tail_from = client.tail(system, name, num_lines=19, exclude_beginning=True)

    assert client.view(system, name) == "".join(lines)
    assert head["content"] == "".join(lines[:10])
    assert head["contentType"] == "lines"
    assert head_three["content"] == "".join(lines[:3])
    assert head_bytes == {"content": "line", "contentType": "bytes", "startPosition": 0, "endPosition": 4}
    assert head_trimmed["content"] == "".join(lines[:2])
    assert tail_two["content"] == "".join(lines[-2:])
    assert tail_bytes["content"] == "20\n"
    assert tail_bytes["contentType"] == "bytes"
    assert tail_from["content"] == "".join(lines[18:])


def test_checksum(client, system, folder):
    content = os.urandom(100_000)
    (folder / "data.bin").write_bytes(content)

    result = client.checksum(system, str(folder / "data.bin"))

    assert result == {"algorithm": "SHA256", "checksum": hashlib.sha256(content).hexdigest()}


def test_file_type(client, system, folder):
    (folder / "text").write_text("plain words\n")
    (folder / "empty").write_bytes(b"")

    assert client.file_type(system, str(folder / "text")) == "ASCII text"
    assert client.file_type(system, str(folder / "empty")) == "empty"
    assert client.file_type(system, str(folder)) == "directory"


# -- Changing ----------------------------------------------------------------------------------


def test_mkdir(client, system, folder):
    nested = folder / "x" / "y" / "z"

    created = client.mkdir(system, str(nested), create_parents=True)
    single = client.mkdir(system, str(folder / "single"))

    assert nested.is_dir()
    assert (folder / "single").is_dir()
    assert created["name"] == str(nested)
    assert created["type"] == "d"
    assert single["name"] == str(folder / "single")


def test_mkdir_errors(client, system, folder):
    (folder / "exists").mkdir()

    with pytest.raises(UnexpectedStatusException) as no_parent:
        client.mkdir(system, str(folder / "missing" / "child"))
    with pytest.raises(UnexpectedStatusException) as exists:
        client.mkdir(system, str(folder / "exists"))

    assert status_of(no_parent) == 404
    assert status_of(exists) == 400
    assert not (folder / "missing").exists()


def test_chmod(client, system, folder):
    path = folder / "f"
    path.write_bytes(b"x")
    path.chmod(0o644)

    numeric = client.chmod(system, str(path), "600")
    numeric_mode = stat.S_IMODE(path.stat().st_mode)
    symbolic = client.chmod(system, str(path), "u+x")
    symbolic_mode = stat.S_IMODE(path.stat().st_mode)

    assert numeric_mode == 0o600
    assert numeric["permissions"] == "rw-------"
    assert symbolic_mode == 0o700
    assert symbolic["permissions"] == "rwx------"


def test_chown_to_own_user(client, system, folder):
    path = folder / "f"
    path.write_bytes(b"x")
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name

    result = client.chown(system, str(path), user, group)

    assert result["user"] == user
    assert result["group"] == group
    assert path.stat().st_uid == os.getuid()
    assert path.stat().st_gid == os.getgid()


def test_symlink(client, system, folder):
    target = folder / "target.txt"
    target.write_bytes(b"t")
    link = folder / "link"

    result = client.symlink(system, str(target), str(link))

    assert os.readlink(link) == str(target)
    assert link.read_bytes() == b"t"
    assert result["output"]["type"] == "l"
    assert result["output"]["linkTarget"] == str(target)


# -- Upload and download ------------------------------------------------------------------------


def test_upload_bytes(client, system, folder, tmp_path):
    local = tmp_path / "local.bin"
    content = os.urandom(300_000)
    local.write_bytes(content)
    # pyfirecrest uploads files under 1 MiB directly with ops/upload.
    largest_direct = os.urandom(Firecrest.MAX_DIRECT_UPLOAD_SIZE - 1)

    from_path = client.upload(system, local, str(folder), "up load.bin")
    from_stream = client.upload(
        system, io.BytesIO(largest_direct), str(folder), "stream.bin", file_size=len(largest_direct)
    )

    assert from_path is None
    assert from_stream is None
    assert (folder / "up load.bin").read_bytes() == content
    assert (folder / "stream.bin").read_bytes() == largest_direct


def test_upload_overwrites(client, system, folder):
    (folder / "f.bin").write_bytes(b"old content that is longer")

    client.upload(system, io.BytesIO(b"new"), str(folder), "f.bin", file_size=3)

    assert (folder / "f.bin").read_bytes() == b"new"


def test_download_bytes(client, system, folder, tmp_path):
    content = os.urandom(200_000)
    largest_direct = os.urandom(Firecrest.MAX_DIRECT_UPLOAD_SIZE - 1)
    (folder / "data.bin").write_bytes(content)
    (folder / "large.bin").write_bytes(largest_direct)

    client.download(system, str(folder / "data.bin"), tmp_path / "data.bin")
    client.download(system, str(folder / "large.bin"), str(tmp_path / "large.bin"))

    assert (tmp_path / "data.bin").read_bytes() == content
    assert (tmp_path / "large.bin").read_bytes() == largest_direct


def test_download_missing_file(client, system, folder, tmp_path):
    # pyfirecrest turns the 404 "No such file or directory" of ops/stat into FileNotFoundError.
    with pytest.raises(FileNotFoundError):
        client.download(system, str(folder / "missing"), tmp_path / "missing")

    assert not (tmp_path / "missing").exists()


def test_staged_transfers_fail_without_data_transfer(client, system, folder, tmp_path):
    # pyfirecrest stages files of 1 MiB or more through transfer/upload and transfer/download.
    size = Firecrest.MAX_DIRECT_UPLOAD_SIZE
    (folder / "large.bin").write_bytes(b"d" * size)

    with pytest.raises(UnexpectedStatusException) as upload:
        client.upload(system, io.BytesIO(b"u" * size), str(folder), "staged.bin", file_size=size)
    with pytest.raises(UnexpectedStatusException) as download:
        client.download(system, str(folder / "large.bin"), tmp_path / "large.bin")

    assert status_of(upload) == 500
    assert "No data transfer service is configured" in message_of(upload)
    assert status_of(download) == 500
    assert not (folder / "staged.bin").exists()
    assert not (tmp_path / "large.bin").exists()


# -- Archives ------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "gzip", "bzip2", "xz"])
def test_compress_and_extract(client, system, folder, f7t_server, compression):
    source = make_tree(folder)
    archive = folder / "src.tar"
    target = folder / "out"
    target.mkdir()

    client.compress(system, str(source), str(archive), compression=compression)
    members = archive_members(archive)
    client.extract(system, str(archive), str(target), compression=compression)

    assert set(members) == {"src", "src/a.txt", "src/sub", "src/sub/b.bin", "src/link"}
    assert members["src/link"].linkname == "a.txt"
    assert (target / "src" / "a.txt").read_bytes() == b"alpha\n"
    assert stat.S_IMODE((target / "src" / "a.txt").stat().st_mode) == 0o640
    assert (target / "src" / "sub" / "b.bin").read_bytes() == bytes(range(256))
    assert os.readlink(target / "src" / "link") == "a.txt"
    counts = f7t_server.counters()
    assert counts[f"POST {OPS}/compress"] == 1
    assert counts[f"POST {OPS}/extract"] == 1
    assert f"POST {TRANSFER}/compress" not in counts


def test_compress_dereference_and_pattern(client, system, folder):
    source = make_tree(folder)
    (source / "notes.txt").write_bytes(b"notes\n")

    client.compress(system, str(source), str(folder / "deref.tar.gz"), dereference=True)
    client.compress(system, str(source), str(folder / "texts.tar.gz"), match_pattern=r".*\.txt")
    dereferenced = archive_members(folder / "deref.tar.gz")
    texts = archive_members(folder / "texts.tar.gz")

    assert dereferenced["src/link"].isfile()
    assert dereferenced["src/link"].size == len(b"alpha\n")
    assert {name for name, member in texts.items() if member.isfile()} == {"./src/a.txt", "./src/notes.txt"}


def test_compress_as_transfer_job(client, system, folder, f7t_server):
    source = make_tree(folder)
    archive = folder / "src.tar.gz"
    f7t_server.set_faults([timeout_fault("POST", f"{OPS}/compress")])

    # After a 408 from ops/compress, pyfirecrest sends transfer/compress and waits for the job.
    call_with_deadline(client.compress, system, str(source), str(archive))

    assert set(archive_members(archive)) == {"src", "src/a.txt", "src/sub", "src/sub/b.bin", "src/link"}
    counts = f7t_server.counters()
    assert counts[f"POST {OPS}/compress"] == 1
    assert counts[f"POST {TRANSFER}/compress"] == 1


def test_extract_as_transfer_job(client, system, folder, f7t_server):
    source = make_tree(folder)
    archive = folder / "src.tar.gz"
    with tarfile.open(archive, mode="w:gz") as tar:
        tar.add(source, arcname="src")
    target = folder / "out"
    target.mkdir()
    f7t_server.set_faults([timeout_fault("POST", f"{OPS}/extract")])

    call_with_deadline(client.extract, system, str(archive), str(target))

    assert (target / "src" / "a.txt").read_bytes() == b"alpha\n"
    assert (target / "src" / "sub" / "b.bin").read_bytes() == bytes(range(256))
    counts = f7t_server.counters()
    assert counts[f"POST {OPS}/extract"] == 1
    assert counts[f"POST {TRANSFER}/extract"] == 1


# -- Transfer jobs ---------------------------------------------------------------------------


def test_mv_waits_for_job(client, system, folder):
    (folder / "old.txt").write_bytes(b"moved content")
    source = make_tree(folder)

    file_job = client.mv(system, str(folder / "old.txt"), str(folder / "new.txt"), timeout=JOB_TIMEOUT)
    folder_job = client.mv(system, str(source), str(folder / "renamed"), timeout=JOB_TIMEOUT)

    assert not (folder / "old.txt").exists()
    assert (folder / "new.txt").read_bytes() == b"moved content"
    assert not source.exists()
    assert (folder / "renamed" / "sub" / "b.bin").read_bytes() == bytes(range(256))
    assert "Files were successfully moved." in output_log_text(file_job)
    assert folder_job["transferJob"]["system"] == system


def test_mv_failure_is_detected(client, system, folder):
    # The job ends COMPLETED with exit code 0 but without the success line, as on the real server.
    with pytest.raises(TransferJobFailedException):
        client.mv(system, str(folder / "missing"), str(folder / "target"), timeout=JOB_TIMEOUT)

    assert not (folder / "target").exists()


def test_cp(client, system, folder):
    source = make_tree(folder)
    os.utime(source / "a.txt", (1_000_000_000, 1_000_000_000))

    client.cp(system, str(source / "a.txt"), str(folder / "copy.txt"), timeout=JOB_TIMEOUT)
    client.cp(system, str(source), str(folder / "tree"), timeout=JOB_TIMEOUT)
    client.cp(system, str(source / "link"), str(folder / "followed"), dereference=True, timeout=JOB_TIMEOUT)

    copied = (folder / "copy.txt").stat()
    assert (folder / "copy.txt").read_bytes() == b"alpha\n"
    assert stat.S_IMODE(copied.st_mode) == 0o640
    assert copied.st_mtime == 1_000_000_000
    assert (folder / "tree" / "sub" / "b.bin").read_bytes() == bytes(range(256))
    assert os.readlink(folder / "tree" / "link") == "a.txt"
    assert not (folder / "followed").is_symlink()
    assert (folder / "followed").read_bytes() == b"alpha\n"
    assert (source / "a.txt").exists()


def test_rm_direct(client, system, folder, f7t_server):
    (folder / "f").write_bytes(b"x")
    source = make_tree(folder)

    assert client.rm(system, str(folder / "f")) is None
    assert client.rm(system, str(source)) is None

    assert not (folder / "f").exists()
    assert not source.exists()
    counts = f7t_server.counters()
    assert counts[f"DELETE {OPS}/rm"] == 2
    assert f"DELETE {TRANSFER}/rm" not in counts


def test_rm_as_transfer_job(client, system, folder, f7t_server):
    source = make_tree(folder)
    f7t_server.set_faults([timeout_fault("DELETE", f"{OPS}/rm")])

    # After a 408 from ops/rm, pyfirecrest sends transfer/rm (status 200) and waits for the job.
    job = client.rm(system, str(source), timeout=JOB_TIMEOUT)

    assert not source.exists()
    assert job is not None
    assert "Files were successfully deleted." in output_log_text(job)
    counts = f7t_server.counters()
    assert counts[f"DELETE {OPS}/rm"] == 1
    assert counts[f"DELETE {TRANSFER}/rm"] == 1


def test_rm_missing(client, system, folder):
    with pytest.raises(UnexpectedStatusException) as raised:
        client.rm(system, str(folder / "missing"))

    assert status_of(raised) == 404


def test_job_info_and_cancel(client, system, folder, f7t_server):
    (folder / "stays.txt").write_bytes(b"s")
    f7t_server.update_settings(job_queue_delay=60)

    job_info = client.mv(system, str(folder / "stays.txt"), str(folder / "gone.txt"), blocking=False)
    job_id = job_info["transferJob"]["jobId"]
    pending = client.job_info(system, job_id)
    listed = [job["jobId"] for job in client.job_info(system)]
    named = [job["jobId"] for job in client.job_info(system, name="MoveFiles", time_window="1h")]
    metadata = client.job_metadata(system, job_id)
    cancelled = client.cancel_job(system, job_id)
    finished = client.wait_for_job(system, job_id, timeout=JOB_TIMEOUT)

    assert pending[0]["status"]["state"] == "PENDING"
    assert pending[0]["name"] == "MoveFiles"
    assert job_id in listed
    assert job_id in named
    assert metadata[0]["jobId"] == job_id
    assert "mv -- " in metadata[0]["script"]
    assert cancelled == {}
    assert finished[0]["status"]["state"].startswith("CANCELLED")
    assert (folder / "stays.txt").exists()
    assert not (folder / "gone.txt").exists()


def new_job_id(client: Firecrest, system: str, known: set[str]) -> str:
    """Return the id of the one job not in `known`, polling for up to JOB_TIMEOUT seconds."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        new = [job["jobId"] for job in client.job_info(system) if job["jobId"] not in known]
        if new:
            assert len(new) == 1, new
            return new[0]
        time.sleep(0.05)
    pytest.fail(f"no new job appeared within {JOB_TIMEOUT} s")


def test_job_cancelled_before_start(client, system, folder, f7t_server):
    (folder / "stays.txt").write_bytes(b"s")
    f7t_server.update_settings(job_queue_delay=60)
    known = {job["jobId"] for job in client.job_info(system)}
    canceller = make_client(f7t_server)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        waiting = pool.submit(client.mv, system, str(folder / "stays.txt"), str(folder / "gone.txt"), timeout=JOB_TIMEOUT)
        canceller.cancel_job(system, new_job_id(canceller, system, known))
        with pytest.raises(TransferJobFailedException) as raised:
            waiting.result(timeout=CALL_DEADLINE)
    finally:
        pool.shutdown(wait=False)
        canceller.close_session()

    # A job cancelled while PENDING never wrote its output log, and pyfirecrest reads the 404 so.
    assert "Logs for transfer job not found" in str(raised.value)
    assert (folder / "stays.txt").exists()
    assert not (folder / "gone.txt").exists()


def test_cancel_finished_job(client, system, folder):
    (folder / "f").write_bytes(b"x")
    job = client.mv(system, str(folder / "f"), str(folder / "g"), timeout=JOB_TIMEOUT)

    with pytest.raises(UnexpectedStatusException) as raised:
        client.cancel_job(system, job["transferJob"]["jobId"])

    assert status_of(raised) == 500
    assert "already completing or completed" in message_of(raised)


def test_job_timeout_cancels_job(client, system, folder, f7t_server):
    (folder / "stays.txt").write_bytes(b"s")
    f7t_server.update_settings(job_queue_delay=60)

    # pyfirecrest cancels the job when its own timeout passes, then raises.
    with pytest.raises(TransferJobTimeoutException):
        client.mv(system, str(folder / "stays.txt"), str(folder / "gone.txt"), timeout=1)
    # The exception keeps the job's id private, and job ids count up.
    latest = max(client.job_info(system, name="MoveFiles"), key=lambda job: int(job["jobId"]))

    assert latest["status"]["state"].startswith("CANCELLED")
    assert (folder / "stays.txt").exists()
    assert not (folder / "gone.txt").exists()
