"""The local server's synchronous `ops/` endpoints: happy paths, documented errors and quirks.

Every test checks the state on disk too, not only the response.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime
import hashlib
import io
import grp
import os
import pwd
import stat
import tarfile
import time
from pathlib import Path

import pytest

from server_support import (  # noqa: F401 (api, api_server and area are fixtures)
    FAST_SETTINGS,
    TEST_MAX_OPS_FILE_SIZE,
    Api,
    api,
    api_server,
    area,
    error_message,
    start_server,
)

MAX = TEST_MAX_OPS_FILE_SIZE


def listing(api, path, **params) -> dict[str, dict]:
    response = api.get("filesystem/ops/ls", path=str(path), **params)
    assert response.status_code == 200, response.text
    return {entry["name"]: entry for entry in response.json()["output"]}


# -- Common behaviour ------------------------------------------------------------------


def test_headers_on_success_and_error(api, area):
    ok = api.get("filesystem/ops/ls", path=str(area))
    missing = api.get("filesystem/ops/ls", path=str(area / "missing"))

    for response in (ok, missing):
        assert "F7T-Timestamp" in response.headers
        assert float(response.headers["F7T-Timestamp"]) > 0
        assert response.headers["F7T-AppVersion"]


def test_error_body_shape(api, area):
    response = api.get("filesystem/ops/ls", path=str(area / "missing"))

    assert response.status_code == 404
    body = response.json()
    assert set(body) == {"errorType", "message", "causedBy", "data", "user"}
    assert body["errorType"] == "error"
    assert body["message"].startswith("Remote process failed with exit status:2 and error message:ls: cannot access")
    assert body["message"].endswith("No such file or directory")
    assert body["user"] == pwd.getpwuid(os.getuid()).pw_name


def test_unknown_system_is_404(api, area):
    response = api.http.get(
        "/filesystem/other/ops/ls", params={"path": str(area)}, headers=api.headers
    )

    assert response.status_code == 404
    assert error_message(response) == "System not found"


def test_system_name_and_url_path_case_insensitive(api, area):
    (area / "Mixed").write_text("x")

    response = api.http.get(
        f"/FileSystem/{api.system.upper()}/OPS/LS", params={"path": str(area)}, headers=api.headers
    )

    assert response.status_code == 200
    assert [entry["name"] for entry in response.json()["output"]] == ["Mixed"]


def test_relative_path_is_400(api):
    response = api.get("filesystem/ops/ls", path="relative/dir")

    assert response.status_code == 400
    assert error_message(response) == "The provided path (relative/dir) is not an absolute path."


def test_path_outside_file_systems_is_400(api):
    response = api.get("filesystem/ops/ls", path="/etc")

    assert response.status_code == 400
    assert error_message(response) == (
        "The provided path (/etc) does not match any of the defined filesystem paths "
        f"for the requested system ({api.system})."
    )


def test_dotdot_is_normalised_before_check(api, area):
    escaping = f"{area}/../../../../../../etc"

    response = api.get("filesystem/ops/ls", path=escaping)

    assert response.status_code == 400
    assert "does not match any of the defined filesystem paths" in error_message(response)


def test_missing_path_parameter_is_400(api):
    response = api.get("filesystem/ops/stat")

    assert response.status_code == 400
    assert error_message(response) == "All filesystem requests require a path or source_path parameter."


def test_validation_error_is_400_with_fields(api, area):
    (area / "f").write_text("x")

    response = api.get("filesystem/ops/view", path=str(area / "f"), offset="x")

    assert response.status_code == 400
    body = response.json()
    assert body["errorType"] == "validation"
    fields = body["data"]["fields"]
    assert len(fields) == 1
    assert fields[0]["location"] == "query"
    assert fields[0]["name"] == "offset"
    assert fields[0]["message"].startswith("Input should be a valid integer")


def test_single_quote_is_500_and_nothing_runs(api, area):
    quoted = area / "it's"
    quoted.mkdir()
    (quoted / "inside").write_text("kept")

    removal = api.delete("filesystem/ops/rm", path=str(quoted))
    creation = api.post("filesystem/ops/mkdir", {"path": str(area / "new'dir")})

    expected = (
        "Remote process failed with exit status:2 and error message:"
        "bash: -c: line 1: unexpected EOF while looking for matching `''"
    )
    for response in (removal, creation):
        assert response.status_code == 500
        assert error_message(response) == expected
    assert (quoted / "inside").read_text() == "kept"
    assert not (area / "new'dir").exists()


def test_single_quote_in_chmod_mode_rejected(api, area):
    target = area / "f"
    target.write_text("x")
    target.chmod(0o644)

    response = api.put("filesystem/ops/chmod", {"path": str(target), "mode": "600' '/etc/passwd"})

    assert response.status_code == 500
    assert "unexpected EOF while looking for matching" in error_message(response)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_command_timeout_is_408(api, area):
    fifo = area / "pipe"
    os.mkfifo(fifo)

    started = time.monotonic()
    response = api.get("filesystem/ops/view", path=str(fifo), size=10)
    elapsed = time.monotonic() - started

    assert response.status_code == 408
    assert error_message(response) == "Remote process failed with exit status:124"
    assert 0.9 < elapsed < 5


def test_slow_command_does_not_block_others(api, area):
    fifo = area / "pipe"
    os.mkfifo(fifo)
    (area / "f").write_text("x")

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        started = time.monotonic()
        slow = pool.submit(api.get, "filesystem/ops/view", path=str(fifo), size=10)
        time.sleep(0.2)
        quick = api.get("filesystem/ops/stat", path=str(area / "f"))
        quick_done = time.monotonic() - started
        slow_response = slow.result()

    assert quick.status_code == 200
    assert quick_done < 0.9
    assert slow_response.status_code == 408


# -- ls ----------------------------------------------------------------------------------


def test_ls_entries_and_fields(api, area):
    (area / "file.txt").write_bytes(b"12345")
    (area / "dir").mkdir()
    os.symlink("file.txt", area / "link")
    os.utime(area / "file.txt", (1_000_000_000, 1_000_000_000))

    entries = listing(api, area)

    assert set(entries) == {"file.txt", "dir", "link"}
    assert entries["file.txt"]["type"] == "-"
    assert entries["file.txt"]["size"] == "5"
    assert entries["file.txt"]["linkTarget"] is None
    assert entries["file.txt"]["permissions"] == stat.filemode(os.lstat(area / "file.txt").st_mode)[1:]
    expected_time = datetime.datetime.fromtimestamp(1_000_000_000).strftime("%Y-%m-%dT%H:%M:%S")
    assert entries["file.txt"]["lastModified"] == expected_time
    assert entries["dir"]["type"] == "d"
    assert entries["link"]["type"] == "l"
    assert entries["link"]["linkTarget"] == "file.txt"
    assert set(entries["dir"]) == {"name", "type", "linkTarget", "user", "group", "permissions", "lastModified", "size"}


def test_ls_hidden_only_with_show_hidden(api, area):
    (area / ".hidden").write_text("x")
    (area / "shown").write_text("x")

    assert set(listing(api, area)) == {"shown"}
    assert set(listing(api, area, showHidden="true")) == {".hidden", "shown"}


def test_ls_numeric_uid(api, area):
    (area / "f").write_text("x")

    entry = listing(api, area, numericUid="true")["f"]

    assert entry["user"] == str(os.getuid())
    assert entry["group"] == str(os.getgid())


def test_ls_c_escaped_names(api, area):
    names = ["café", "new\nline", "sp ace", 'q"uote', "back\\slash", "tab\there"]
    for name in names:
        (area / name).write_text("x")

    listed = set(listing(api, area))

    assert listed == {"caf\\303\\251", "new\\nline", "sp ace", 'q"uote', "back\\slash", "tab\\there"}


def test_ls_of_file_names_path_as_given(api, area):
    (area / "f.txt").write_text("x")
    given = f"{area}//f.txt"

    entries = listing(api, given)

    assert list(entries) == [given]


def test_ls_recursive_names_relative(api, area):
    (area / "a" / "b").mkdir(parents=True)
    (area / "a" / "b" / "deep.txt").write_text("x")
    (area / "top.txt").write_text("x")

    names = set(listing(api, area, recursive="true"))

    assert names == {"a", "top.txt", "a/b", "a/b/deep.txt"}


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a device file needs root")
def test_ls_skips_device_files(api, area):
    os.mknod(area / "null-device", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    (area / "plain").write_text("x")

    names = set(listing(api, area))

    assert names == {"plain"}


def test_ls_missing_is_404(api, area):
    response = api.get("filesystem/ops/ls", path=str(area / "nope"))

    assert response.status_code == 404


def test_ls_timezone_matches_server_option(tmp_path):
    server = start_server(tmp_path, timezone="Asia/Kolkata", **FAST_SETTINGS)
    try:
        client = Api(server)
        target = Path(server.root) / "f"
        target.write_text("x")
        os.utime(target, (1_700_000_000, 1_700_000_000))
        entries = listing(client, server.root)
        client.close()
    finally:
        server.stop()

    india = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    expected = datetime.datetime.fromtimestamp(1_700_000_000, india).strftime("%Y-%m-%dT%H:%M:%S")
    assert entries["f"]["lastModified"] == expected


# -- stat, file, checksum --------------------------------------------------------------


def test_stat_values_match_lstat(api, area):
    target = area / "f"
    target.write_bytes(b"abcdefgh")
    os.symlink("f", area / "link")
    info = os.lstat(target)

    response = api.get("filesystem/ops/stat", path=str(target))

    assert response.status_code == 200
    output = response.json()["output"]
    assert output == {
        "mode": info.st_mode,
        "ino": info.st_ino,
        "dev": info.st_dev,
        "nlink": info.st_nlink,
        "uid": info.st_uid,
        "gid": info.st_gid,
        "size": 8,
        "atime": int(info.st_atime),
        "ctime": int(info.st_ctime),
        "mtime": int(info.st_mtime),
    }


def test_stat_link_without_and_with_dereference(api, area):
    (area / "f").write_bytes(b"abcdefgh")
    os.symlink("f", area / "link")

    plain = api.get("filesystem/ops/stat", path=str(area / "link")).json()["output"]
    followed = api.get("filesystem/ops/stat", path=str(area / "link"), dereference="true").json()["output"]

    assert stat.S_ISLNK(plain["mode"])
    assert stat.S_ISREG(followed["mode"])
    assert followed["size"] == 8


def test_stat_missing_is_404(api, area):
    assert api.get("filesystem/ops/stat", path=str(area / "nope")).status_code == 404


def test_checksum_is_sha256(api, area):
    content = os.urandom(1000)
    (area / "f").write_bytes(content)

    response = api.get("filesystem/ops/checksum", path=str(area / "f"))

    assert response.status_code == 200
    assert response.json()["output"] == {"algorithm": "SHA256", "checksum": hashlib.sha256(content).hexdigest()}


def test_file_type(api, area):
    (area / "text").write_text("plain words\n")

    response = api.get("filesystem/ops/file", path=str(area / "text"))

    assert response.status_code == 200
    assert response.json()["output"] == "ASCII text"


def test_file_of_missing_path_is_200(api, area):
    response = api.get("filesystem/ops/file", path=str(area / "nope"))

    assert response.status_code == 200
    assert "No such file or directory" in response.json()["output"]


# -- view, head, tail -------------------------------------------------------------------


def test_view_offset_and_size(api, area):
    (area / "f").write_text("0123456789abcdef")

    aligned = api.get("filesystem/ops/view", path=str(area / "f"), offset=4, size=4)
    unaligned = api.get("filesystem/ops/view", path=str(area / "f"), offset=6, size=4)
    past_end = api.get("filesystem/ops/view", path=str(area / "f"), offset=100, size=4)

    assert aligned.json()["output"] == "4567"
    assert unaligned.json()["output"] == "6789"
    assert past_end.json()["output"] == ""


def test_view_slices_characters_not_bytes(api, area):
    (area / "f").write_text("ééABCDEFG")

    response = api.get("filesystem/ops/view", path=str(area / "f"), offset=2, size=3)

    assert response.json()["output"] == "AB"


def test_view_parameter_rules(api, area):
    (area / "f").write_text("x")
    path = str(area / "f")

    cases = [
        ({"offset": -1, "size": 10}, "`offset` value must be an integer value equal or greater than 0"),
        ({"size": 0}, "`size` value must be an integer value greater than 0"),
        ({"size": MAX + 1}, f"`size` value must be less than {MAX} bytes"),
        ({}, f"`size` value must be less than {MAX} bytes"),
    ]
    for params, message in cases:
        response = api.get("filesystem/ops/view", path=path, **params)
        assert response.status_code == 400, params
        assert error_message(response) == message, params


def test_view_output_limit_is_twice_size(api, area):
    (area / "big").write_bytes(b"x" * MAX)
    half = MAX // 2

    below = api.get("filesystem/ops/view", path=str(area / "big"), size=half - 1)
    at_limit = api.get("filesystem/ops/view", path=str(area / "big"), size=half)

    assert below.status_code == 200
    assert below.json()["output"] == "x" * (half - 1)
    assert at_limit.status_code == 413
    assert error_message(at_limit) == "Command output exceeded buffer limit."


def test_head_lines_and_bytes(api, area):
    (area / "f").write_text("1\n2\n3\n4\n5\n")
    path = str(area / "f")

    lines = api.get("filesystem/ops/head", path=path, lines=2).json()["output"]
    chunk = api.get("filesystem/ops/head", path=path, bytes=3).json()["output"]
    skipped = api.get("filesystem/ops/head", path=path, lines=2, skipTrailing="true").json()["output"]
    default = api.get("filesystem/ops/head", path=path).json()["output"]

    assert lines == {"content": "1\n2\n", "contentType": "lines", "startPosition": 0, "endPosition": 2}
    assert chunk == {"content": "1\n2", "contentType": "bytes", "startPosition": 0, "endPosition": 3}
    assert skipped["content"] == "1\n2\n3\n"
    assert skipped["endPosition"] == -2
    assert default["content"] == "1\n2\n3\n4\n5\n"
    assert default["endPosition"] == 10


def test_tail_lines_and_bytes(api, area):
    (area / "f").write_text("1\n2\n3\n4\n5\n")
    path = str(area / "f")

    chunk = api.get("filesystem/ops/tail", path=path, bytes=2).json()["output"]
    lines = api.get("filesystem/ops/tail", path=path, lines=2).json()["output"]
    skipped = api.get("filesystem/ops/tail", path=path, lines=4, skipHeading="true").json()["output"]

    assert chunk == {"content": "5\n", "contentType": "bytes", "startPosition": -2, "endPosition": -1}
    assert lines["content"] == "4\n5\n"
    assert lines["startPosition"] == -2
    assert skipped["content"] == "4\n5\n"
    assert skipped["startPosition"] == 4


def test_head_tail_reject_bytes_and_lines(api, area):
    (area / "f").write_text("x\n")

    for endpoint in ("filesystem/ops/head", "filesystem/ops/tail"):
        response = api.get(endpoint, path=str(area / "f"), bytes=1, lines=1)
        assert response.status_code == 400
        assert error_message(response) == "Only one of `bytes` or `lines` can be specified."


# -- download and upload ---------------------------------------------------------------------


def test_download_exact_bytes(api, area):
    content = os.urandom(2000)
    (area / "bin").write_bytes(content)

    response = api.get("filesystem/ops/download", path=str(area / "bin"))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == content


def test_download_boundary_from_base64_size(api, area):
    # base64 output of n bytes is 4 * ceil(n / 3) characters and must stay below MAX.
    largest = 3 * ((MAX - 1) // 4)
    assert len(base64.b64encode(b"x" * largest)) < MAX
    assert len(base64.b64encode(b"x" * (largest + 1))) >= MAX
    fits = os.urandom(largest)
    (area / "fits").write_bytes(fits)
    (area / "over").write_bytes(os.urandom(largest + 1))

    ok = api.get("filesystem/ops/download", path=str(area / "fits"))
    over = api.get("filesystem/ops/download", path=str(area / "over"))

    assert ok.status_code == 200
    assert ok.content == fits
    assert over.status_code == 413
    assert error_message(over) == "Command output exceeded buffer limit."


def test_download_missing_is_404(api, area):
    assert api.get("filesystem/ops/download", path=str(area / "nope")).status_code == 404


def test_upload_writes_exact_bytes_and_overwrites(api, area):
    first = os.urandom(100)
    second = os.urandom(50)

    created = api.upload(area, "data.bin", first)
    replaced = api.upload(area, "data.bin", second)

    assert created.status_code == 204
    assert replaced.status_code == 204
    assert (area / "data.bin").read_bytes() == second


def test_upload_name_with_space(api, area):
    response = api.upload(area, "with space.txt", b"abc")

    assert response.status_code == 204
    assert (area / "with space.txt").read_bytes() == b"abc"


def test_upload_size_boundary(api, area):
    exact = os.urandom(MAX)

    ok = api.upload(area, "exact", exact)
    over = api.upload(area, "over", os.urandom(MAX + 1))

    assert ok.status_code == 204
    assert (area / "exact").read_bytes() == exact
    assert over.status_code == 413
    assert error_message(over) == "File to upload is too large."
    assert not (area / "over").exists()


def test_upload_empty_file_times_out_but_creates(api, area):
    started = time.monotonic()
    response = api.upload(area, "empty", b"")
    elapsed = time.monotonic() - started

    assert response.status_code == 408
    assert error_message(response) == "Remote process failed with exit status:124"
    assert 0.9 < elapsed < 5
    assert (area / "empty").exists()
    assert (area / "empty").stat().st_size == 0


def test_upload_name_altered_by_multipart_encoding(api, area):
    # httpx percent-encodes a double quote in the multipart filename, and the
    # server's multipart parser does not decode it, as on the real server.
    response = api.upload(area, 'a"b', b"abc")

    assert response.status_code == 204
    assert os.listdir(area) == ["a%22b"]


def test_upload_into_missing_directory_is_404(api, area):
    response = api.upload(area / "missing", "f", b"abc")

    assert response.status_code == 404


# -- mkdir, rm, chmod, chown, symlink ---------------------------------------------------------


def test_mkdir_returns_full_path(api, area):
    response = api.post("filesystem/ops/mkdir", {"path": str(area / "new")})

    assert response.status_code == 201
    output = response.json()["output"]
    assert output["name"] == str(area / "new")
    assert output["type"] == "d"
    assert (area / "new").is_dir()


def test_mkdir_accepts_source_path_aliases(api, area):
    camel = api.post("filesystem/ops/mkdir", {"sourcePath": str(area / "camel")})
    snake = api.post("filesystem/ops/mkdir", {"source_path": str(area / "snake")})

    assert camel.status_code == 201
    assert snake.status_code == 201
    assert (area / "camel").is_dir()
    assert (area / "snake").is_dir()


def test_mkdir_errors(api, area):
    (area / "exists").mkdir()

    exists = api.post("filesystem/ops/mkdir", {"path": str(area / "exists")})
    no_parent = api.post("filesystem/ops/mkdir", {"path": str(area / "a" / "b")})
    with_parent = api.post("filesystem/ops/mkdir", {"path": str(area / "a" / "b"), "parent": True})

    assert exists.status_code == 400
    assert "File exists" in error_message(exists)
    assert no_parent.status_code == 404
    assert with_parent.status_code == 201
    assert (area / "a" / "b").is_dir()


def test_rm_removes_non_empty_directory(api, area):
    tree = area / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "file").write_text("x")

    response = api.delete("filesystem/ops/rm", path=str(tree))

    assert response.status_code == 204
    assert response.content == b""
    assert not tree.exists()


def test_rm_missing_is_404(api, area):
    assert api.delete("filesystem/ops/rm", path=str(area / "nope")).status_code == 404


def test_chmod_octal_and_symbolic(api, area):
    target = area / "f"
    target.write_text("x")

    octal = api.put("filesystem/ops/chmod", {"path": str(target), "mode": "640"})
    mode_after_octal = stat.S_IMODE(target.stat().st_mode)
    symbolic = api.put("filesystem/ops/chmod", {"path": str(target), "mode": "u+x"})

    assert octal.status_code == 200
    assert octal.json()["output"]["permissions"] == "rw-r-----"
    assert octal.json()["output"]["name"] == str(target)
    assert mode_after_octal == 0o640
    assert symbolic.status_code == 200
    assert stat.S_IMODE(target.stat().st_mode) == 0o740


def test_chown_to_own_ids(api, area):
    target = area / "f"
    target.write_text("x")
    owner = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name

    response = api.put("filesystem/ops/chown", {"path": str(target), "owner": owner, "group": group})

    assert response.status_code == 200
    assert response.json()["output"]["user"] == owner
    assert response.json()["output"]["group"] == group


def test_chown_unknown_user(api, area):
    target = area / "f"
    target.write_text("x")
    group = grp.getgrgid(os.getgid()).gr_name

    with_group = api.put("filesystem/ops/chown", {"path": str(target), "owner": "no-such-user-x", "group": group})
    without_group = api.put("filesystem/ops/chown", {"path": str(target), "owner": "no-such-user-x"})

    assert with_group.status_code == 400
    assert "invalid user" in error_message(with_group)
    assert without_group.status_code == 500
    assert "invalid spec" in error_message(without_group)


def test_symlink_absolute_target(api, area):
    (area / "target").write_text("x")

    response = api.post(
        "filesystem/ops/symlink", {"path": str(area / "target"), "linkPath": str(area / "link")}
    )

    assert response.status_code == 201
    output = response.json()["output"]
    assert output["name"] == str(area / "link")
    assert output["type"] == "l"
    assert output["linkTarget"] == str(area / "target")
    assert os.readlink(area / "link") == str(area / "target")


def test_symlink_relative_target_is_400(api, area):
    response = api.post("filesystem/ops/symlink", {"path": "../target", "linkPath": str(area / "link")})

    assert response.status_code == 400
    assert error_message(response) == "The provided path (../target) is not an absolute path."
    assert not os.path.lexists(area / "link")


def test_symlink_target_outside_is_400(api, area):
    response = api.post("filesystem/ops/symlink", {"path": "/usr/bin/python3", "linkPath": str(area / "link")})

    assert response.status_code == 400
    assert not os.path.lexists(area / "link")


# -- compress and extract ----------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "gzip", "bzip2", "xz"])
def test_compress_then_extract_round_trip(api, area, compression):
    source = area / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "f.txt").write_text("content")
    os.symlink("sub/f.txt", source / "rel-link")
    archive = area / "out.tar"
    target = area / "restored"
    target.mkdir()

    compressed = api.post(
        "filesystem/ops/compress",
        {"path": str(source), "targetPath": str(archive), "compression": compression},
    )
    extracted = api.post(
        "filesystem/ops/extract",
        {"path": str(archive), "targetPath": str(target), "compression": compression},
    )

    assert compressed.status_code == 204
    assert extracted.status_code == 204
    assert (target / "src" / "sub" / "f.txt").read_text() == "content"
    assert os.readlink(target / "src" / "rel-link") == "sub/f.txt"


def test_compress_with_match_pattern_uses_parent(api, area):
    source = area / "src"
    source.mkdir()
    (source / "keep.txt").write_text("k")
    (source / "skip.bin").write_text("s")
    archive = area / "matched.tar.gz"

    response = api.post(
        "filesystem/ops/compress",
        {"path": str(source), "targetPath": str(archive), "matchPattern": r".*\.txt"},
    )

    assert response.status_code == 204
    with tarfile.open(archive, "r:gz") as tar:
        names = sorted(tar.getnames())
    assert names == ["./src/keep.txt"]


def test_extract_creates_links_empty_files_and_modes(api, area):
    archive = area / "batch.tar"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        empty = tarfile.TarInfo("empty")
        empty.mode = 0o640
        empty.mtime = 981_173_106
        tar.addfile(empty, io.BytesIO(b""))
        link = tarfile.TarInfo("rel")
        link.type = tarfile.SYMTYPE
        link.linkname = "../sibling/target"
        tar.addfile(link)
    archive.write_bytes(buffer.getvalue())
    target = area / "out"
    target.mkdir()

    response = api.post(
        "filesystem/ops/extract", {"path": str(archive), "targetPath": str(target), "compression": "none"}
    )

    assert response.status_code == 204
    assert (target / "empty").stat().st_size == 0
    assert int((target / "empty").stat().st_mtime) == 981_173_106
    assert os.readlink(target / "rel") == "../sibling/target"


def test_extract_missing_archive_is_404(api, area):
    response = api.post(
        "filesystem/ops/extract", {"path": str(area / "nope.tar"), "targetPath": str(area), "compression": "none"}
    )

    assert response.status_code == 404


def test_unknown_compression_is_validation_error(api, area):
    response = api.post(
        "filesystem/ops/compress", {"path": str(area), "targetPath": str(area / "x"), "compression": "zip"}
    )

    assert response.status_code == 400
    assert response.json()["errorType"] == "validation"
