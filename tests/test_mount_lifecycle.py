"""Starting and stopping mounts: failed starts, background mounts, the demo, SIGTERM.

These tests run the `firecrest-fs` command line as users do and check that every mount
and process they start is gone at the end. Processes are stopped by PID. The background
daemon is found by its command line, which contains the test's own mount point.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

COMMAND = str(Path(sys.executable).parent / "firecrest-fs")
START_DEADLINE = 30.0
EXIT_DEADLINE = 30.0


def is_mounted(path: Path) -> bool:
    """Return whether /proc/self/mountinfo lists `path`, even as a dead FUSE mount."""
    target = str(path).replace(" ", "\\040")
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        return any(line.split()[4] == target for line in mountinfo)


def pids_with_argument(argument: str) -> list[int]:
    """Return the PIDs of processes that have `argument` as one of their command-line arguments."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                arguments = cmdline.read().split(b"\0")
        except OSError:
            continue
        if os.fsencode(argument) in arguments:
            pids.append(int(entry))
    return pids


def child_pids(parent: int) -> list[int]:
    children = []
    for task in os.listdir(f"/proc/{parent}/task"):
        with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as listing:
            children += [int(pid) for pid in listing.read().split()]
    return children


def process_exists(pid: int) -> bool:
    """Return whether `pid` is a live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as status:
            return status.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition, deadline: float) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def stop_by_pid(pid: int) -> None:
    """Send SIGTERM, then SIGKILL after a few seconds, to a process this test started."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if wait_until(lambda: not process_exists(pid), 5.0):
            return


def unmount_and_wait(mountpoint: Path, daemons: list[int]) -> None:
    """Unmount a background mount, then stop its daemons by PID if they do not exit."""
    subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, timeout=30)
    for pid in daemons:
        if not wait_until(lambda: not process_exists(pid), EXIT_DEADLINE):
            stop_by_pid(pid)


@pytest.fixture
def mountpoint(tmp_path: Path):
    """Create an empty mount point; at the end, unmount it and stop every process that uses it."""
    path = tmp_path / "mnt"
    path.mkdir()
    yield path
    subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True, timeout=30)
    for pid in pids_with_argument(str(path)):
        stop_by_pid(pid)


def run_mount(server, source: str, mountpoint: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **server.client_env()}
    return subprocess.run([COMMAND, "mount", *options, source, str(mountpoint)], env=env,
                          capture_output=True, text=True, timeout=START_DEADLINE)


# -- failed starts -------------------------------------------------------------------------


@pytest.mark.parametrize("foreground", [True, False], ids=["foreground", "background"])
def test_unknown_system_fails_cleanly(server, served: Path, mountpoint: Path, foreground: bool):
    options = ["-f"] if foreground else []
    result = run_mount(server, f"nosuchsystem:{served}", mountpoint, *options)
    assert result.returncode != 0
    assert "system 'nosuchsystem' is not served" in result.stderr
    assert not is_mounted(mountpoint)
    assert wait_until(lambda: pids_with_argument(str(mountpoint)) == [], EXIT_DEADLINE)


def test_missing_mountpoint_fails_cleanly(server, served: Path, tmp_path: Path):
    missing = tmp_path / "absent"
    result = run_mount(server, f"{server.system}:{served}", missing, "-f")
    assert result.returncode == 2
    assert f"mount point {missing} does not exist" in result.stderr
    assert not missing.exists()


def test_path_outside_file_systems_fails(server, mountpoint: Path):
    result = run_mount(server, f"{server.system}:/etc", mountpoint, "-f")
    assert result.returncode != 0
    assert "outside the file systems" in result.stderr
    assert not is_mounted(mountpoint)


@pytest.mark.parametrize(
    ("path", "message"),
    [("absent", "No such file or directory"), ("file.txt", "is not a directory"), ("", "PATH must be absolute")],
    ids=["missing", "file", "relative"],
)
def test_bad_root_path_fails(server, served: Path, mountpoint: Path, path: str, message: str):
    (served / "file.txt").write_bytes(b"not a folder")
    root = f"{served}/{path}" if path else "relative/path"
    result = run_mount(server, f"{server.system}:{root}", mountpoint, "-f")
    assert result.returncode != 0
    assert message in result.stderr
    assert not is_mounted(mountpoint)


def test_quoted_first_name_mount_starts(server, served: Path, mountpoint: Path, tmp_path: Path):
    # Names with a single quote cannot travel in API requests, but they may exist.
    (served / "it's.txt").write_bytes(b"quoted")
    (served / "plain.txt").write_bytes(b"plain")
    log_file = tmp_path / "daemon.log"
    result = run_mount(server, f"{server.system}:{served}", mountpoint, "-o", f"log_file={log_file}")
    daemons = pids_with_argument(str(mountpoint))
    try:
        assert result.returncode == 0, result.stderr
        assert sorted(os.listdir(mountpoint)) == ["it's.txt", "plain.txt"]
        assert (mountpoint / "plain.txt").read_bytes() == b"plain"
    finally:
        unmount_and_wait(mountpoint, daemons)


# -- background mount ----------------------------------------------------------------------


def test_background_mount_and_unmount(server, served: Path, mountpoint: Path, tmp_path: Path):
    (served / "hello.txt").write_bytes(b"hello\n")
    log_file = tmp_path / "daemon.log"
    result = run_mount(server, f"{server.system}:{served}", mountpoint, "-o", f"log_file={log_file}")
    daemons = pids_with_argument(str(mountpoint))
    try:
        assert result.returncode == 0, result.stderr
        assert os.path.ismount(mountpoint)
        assert len(daemons) == 1
        assert (mountpoint / "hello.txt").read_bytes() == b"hello\n"

        unmounted = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, timeout=30)
        assert unmounted.returncode == 0, unmounted.stderr
        assert wait_until(lambda: not process_exists(daemons[0]), EXIT_DEADLINE)
        assert not is_mounted(mountpoint)
        assert "mounted on" in log_file.read_text()
    finally:
        for pid in daemons:
            stop_by_pid(pid)


def test_background_write_reaches_server(server, served: Path, mountpoint: Path, tmp_path: Path):
    log_file = tmp_path / "daemon.log"
    result = run_mount(server, f"{server.system}:{served}", mountpoint, "-o", f"log_file={log_file}")
    daemons = pids_with_argument(str(mountpoint))
    try:
        assert result.returncode == 0, result.stderr
        (mountpoint / "made.txt").write_bytes(b"made in the background\n")
        assert (served / "made.txt").read_bytes() == b"made in the background\n"
    finally:
        unmount_and_wait(mountpoint, daemons)


# -- the demo ------------------------------------------------------------------------------


@pytest.fixture
def demo(tmp_path: Path, mountpoint: Path):
    """Start `firecrest-fs demo` and yield its process with the files of its stdout and stderr.

    The demo is stopped at the end, by SIGTERM and then by SIGKILL.
    """
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    stdout_path = tmp_path / "demo.out"
    stderr_path = tmp_path / "demo.err"
    # TMPDIR puts the sample tree, the server's work folder and the spool under tmp_path.
    env = {**os.environ, "TMPDIR": str(scratch)}
    command = [COMMAND, "demo", str(mountpoint), "--job-queue-delay", "0.05", "--job-run-delay", "0.05"]
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
    try:
        ready = wait_until(lambda: os.path.ismount(mountpoint) or process.poll() is not None, START_DEADLINE)
        if not ready or process.poll() is not None:
            raise RuntimeError(f"the demo did not mount {mountpoint}:\n{stderr_path.read_text(errors='replace')}")
        yield process, stdout_path, stderr_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=EXIT_DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def demo_details(stdout_path: Path) -> tuple[Path, str]:
    """Return the folder the demo serves and its server's URL, from its first output line."""
    text = stdout_path.read_text()
    found = re.search(r"serving (\S.*) as system '\w+' at (http://\S+)", text)
    assert found, f"unexpected demo output:\n{text}"
    return Path(found.group(1)), found.group(2)


def test_demo_lists_sample_tree(demo, mountpoint: Path):
    _process, stdout_path, _stderr_path = demo
    root, _url = demo_details(stdout_path)
    assert sorted(os.listdir(mountpoint)) == sorted(os.listdir(root))
    results = Path("projects", "climate", "results")
    assert sorted(os.listdir(mountpoint / results)) == sorted(os.listdir(root / results))
    assert (mountpoint / "notes with spaces" / "meeting notes.md").read_bytes() == \
        (root / "notes with spaces" / "meeting notes.md").read_bytes()
    assert (mountpoint / "données" / "résumé.txt").read_text() == "Un fichier au nom accentué.\n"
    assert "日本語.txt" in os.listdir(mountpoint / "données")
    binary = results / "field.bin"
    assert (mountpoint / binary).read_bytes() == (root / binary).read_bytes()
    assert os.readlink(mountpoint / "latest-results") == "projects/climate/results"


def test_demo_serves_from_temporary_root(demo, tmp_path: Path):
    _process, stdout_path, _stderr_path = demo
    root, url = demo_details(stdout_path)
    assert root.is_relative_to(tmp_path)
    assert url.startswith("http://127.0.0.1:")


def test_demo_sigterm_stops_everything(demo, mountpoint: Path):
    process, stdout_path, stderr_path = demo
    _root, url = demo_details(stdout_path)
    servers = child_pids(process.pid)
    assert len(servers) == 1

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=EXIT_DEADLINE)

    assert process.returncode == 0, stderr_path.read_text(errors="replace")
    assert not is_mounted(mountpoint)
    assert not process_exists(servers[0])
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/status/liveness/", timeout=5.0)
    assert "Traceback" not in stderr_path.read_text(errors="replace")


def test_demo_write_lands_in_root(demo, mountpoint: Path):
    _process, stdout_path, _stderr_path = demo
    root, _url = demo_details(stdout_path)
    (mountpoint / "new.txt").write_text("hello\n")
    os.rename(mountpoint / "new.txt", mountpoint / "projects" / "new.txt")
    assert (root / "projects" / "new.txt").read_text() == "hello\n"
    assert not (root / "new.txt").exists()


# -- signals -------------------------------------------------------------------------------


def test_sigterm_uploads_open_file(served: Path, mount):
    content = random.Random(3).randbytes(200_000)
    fd = os.open(mount.path / "pending.bin", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, content)
        mount.process.send_signal(signal.SIGTERM)
        mount.process.wait(timeout=EXIT_DEADLINE)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # The mount is gone, so its close can only fail now.

    assert mount.process.returncode == 0
    assert not is_mounted(mount.path)
    assert (served / "pending.bin").read_bytes() == content


def test_sigterm_uploads_modified_file(served: Path, mount):
    (served / "edited.txt").write_bytes(b"first version\n")
    with open(mount.path / "edited.txt", "r+b") as handle:
        handle.seek(0, os.SEEK_END)
        handle.write(b"second line\n")
        handle.flush()
        mount.process.send_signal(signal.SIGTERM)
        mount.process.wait(timeout=EXIT_DEADLINE)
        try:
            handle.close()
        except OSError:
            pass  # The mount is gone, so its close can only fail now.

    assert mount.process.returncode == 0
    assert (served / "edited.txt").read_bytes() == b"first version\nsecond line\n"


def test_sigint_unmounts_cleanly(served: Path, mount):
    mount.process.send_signal(signal.SIGINT)
    mount.process.wait(timeout=EXIT_DEADLINE)
    assert mount.process.returncode == 0
    assert not is_mounted(mount.path)
