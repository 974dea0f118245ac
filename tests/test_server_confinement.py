"""The local server never reads or changes anything outside its file systems.

Each test plants a way out (a symlink to a directory outside, `..`, an archive
member) and checks both the 400 response and that nothing outside changed.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from server_support import api, api_server, area, error_message, outside  # noqa: F401 (fixtures)

OUTSIDE_MESSAGE = "does not match any of the defined filesystem paths"


def assert_rejected(response) -> None:
    assert response.status_code == 400, response.text
    assert OUTSIDE_MESSAGE in error_message(response)


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, content in members:
            if content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def extract(api, area: Path, archive_content: bytes, endpoint: str = "filesystem/ops/extract"):
    (area / "archive.tar").write_bytes(archive_content)
    (area / "out").mkdir(exist_ok=True)
    return api.post(endpoint, {"path": str(area / "archive.tar"), "targetPath": str(area / "out"), "compression": "none"})


# -- Reading through links --------------------------------------------------------------


def test_reads_through_link_out_rejected(api, area, outside):
    os.symlink(outside / "secret.txt", area / "file-link")
    os.symlink(outside, area / "dir-link")
    file_link = str(area / "file-link")

    responses = [
        api.get("filesystem/ops/view", path=file_link, size=100),
        api.get("filesystem/ops/download", path=file_link),
        api.get("filesystem/ops/checksum", path=file_link),
        api.get("filesystem/ops/head", path=file_link),
        api.get("filesystem/ops/tail", path=file_link),
        api.get("filesystem/ops/file", path=file_link),
        api.get("filesystem/ops/stat", path=file_link, dereference="true"),
        api.get("filesystem/ops/ls", path=str(area / "dir-link"), dereference="true"),
        api.get("filesystem/ops/ls", path=str(area / "dir-link") + "/"),
        api.get("filesystem/ops/download", path=str(area / "dir-link" / "secret.txt")),
    ]

    for response in responses:
        assert_rejected(response)


def test_link_itself_still_listed_and_statted(api, area, outside):
    os.symlink(outside, area / "dir-link")

    listed = api.get("filesystem/ops/ls", path=str(area))
    statted = api.get("filesystem/ops/stat", path=str(area / "dir-link"))

    assert listed.status_code == 200
    assert listed.json()["output"][0]["linkTarget"] == str(outside)
    assert statted.status_code == 200
    assert stat.S_ISLNK(statted.json()["output"]["mode"])


def test_ls_dereference_rejects_entry_link_out(api, area, outside):
    (area / "dir").mkdir()
    os.symlink(outside, area / "dir" / "escape")

    flat = api.get("filesystem/ops/ls", path=str(area / "dir"), dereference="true")
    recursive = api.get("filesystem/ops/ls", path=str(area), dereference="true", recursive="true")

    assert_rejected(flat)
    assert_rejected(recursive)


def test_dotdot_through_link_rejected(api, area, outside):
    (outside / "inner").mkdir()
    os.symlink(outside / "inner", area / "link")

    # Lexically this stays inside the area, but `link/..` is the outside directory.
    response = api.get("filesystem/ops/download", path=f"{area}/link/../secret.txt")

    assert_rejected(response)


# -- Changing through links ------------------------------------------------------------------


def test_chmod_through_link_out_rejected(api, area, outside):
    os.symlink(outside / "secret.txt", area / "link")
    before = stat.S_IMODE((outside / "secret.txt").stat().st_mode)

    response = api.put("filesystem/ops/chmod", {"path": str(area / "link"), "mode": "777"})

    assert_rejected(response)
    assert stat.S_IMODE((outside / "secret.txt").stat().st_mode) == before


def test_chown_through_link_out_rejected(api, area, outside):
    os.symlink(outside / "secret.txt", area / "link")

    response = api.put("filesystem/ops/chown", {"path": str(area / "link"), "owner": "nobody"})

    assert_rejected(response)
    assert (outside / "secret.txt").stat().st_uid == os.getuid()


def test_upload_through_links_rejected(api, area, outside):
    os.symlink(outside, area / "dir-link")
    os.symlink(outside / "secret.txt", area / "file-link")

    into_linked_dir = api.upload(area / "dir-link", "planted", b"x")
    over_linked_file = api.upload(area, "file-link", b"overwritten")
    climbing_name = api.upload(area, "../../../../../../../../" + str(outside).lstrip("/") + "/planted2", b"x")

    for response in (into_linked_dir, over_linked_file, climbing_name):
        assert_rejected(response)
    assert not (outside / "planted").exists()
    assert not (outside / "planted2").exists()
    assert (outside / "secret.txt").read_text() == "secret\n"


def test_mkdir_through_link_rejected(api, area, outside):
    os.symlink(outside, area / "dir-link")

    response = api.post("filesystem/ops/mkdir", {"path": str(area / "dir-link" / "a" / "b"), "parent": True})

    assert_rejected(response)
    assert not (outside / "a").exists()


def test_rm_of_link_removes_only_link(api, area, outside):
    os.symlink(outside, area / "dir-link")

    link_removal = api.delete("filesystem/ops/rm", path=str(area / "dir-link"))
    through_slash = api.delete("filesystem/ops/rm", path=str(area / "dir-link") + "/")

    assert link_removal.status_code == 204
    assert not os.path.lexists(area / "dir-link")
    assert through_slash.status_code in (400, 404)
    assert (outside / "secret.txt").exists()


def test_rm_through_trailing_slash_rejected(api, area, outside):
    os.symlink(outside, area / "dir-link")

    response = api.delete("filesystem/ops/rm", path=str(area / "dir-link") + "/")

    assert_rejected(response)
    assert (outside / "secret.txt").exists()


def test_rm_of_root_rejected(api, api_server):
    response = api.delete("filesystem/ops/rm", path=api_server.root)

    assert_rejected(response)
    assert os.path.isdir(api_server.root)


def test_symlink_paths_checked(api, area, outside):
    os.symlink(outside, area / "dir-link")
    (area / "target").write_text("x")

    link_outside = api.post("filesystem/ops/symlink", {"path": str(area / "target"), "linkPath": str(outside / "l")})
    link_into_linked_dir = api.post(
        "filesystem/ops/symlink", {"path": str(area / "target"), "linkPath": str(area / "dir-link")}
    )
    target_through_link = api.post(
        "filesystem/ops/symlink", {"path": str(area / "dir-link" / "secret.txt"), "linkPath": str(area / "l2")}
    )

    for response in (link_outside, link_into_linked_dir, target_through_link):
        assert_rejected(response)
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert not os.path.lexists(area / "l2")


def test_compress_paths_checked(api, area, outside):
    (area / "src").mkdir()
    os.symlink(outside, area / "src" / "escape")
    os.symlink(outside, area / "dir-link")

    dereferenced = api.post(
        "filesystem/ops/compress",
        {"path": str(area / "src"), "targetPath": str(area / "a.tar.gz"), "dereference": True},
    )
    target_outside = api.post("filesystem/ops/compress", {"path": str(area / "src"), "targetPath": str(outside / "a.tgz")})
    target_through_link = api.post(
        "filesystem/ops/compress", {"path": str(area / "src"), "targetPath": str(area / "dir-link" / "a.tgz")}
    )

    for response in (dereferenced, target_outside, target_through_link):
        assert_rejected(response)
    assert not (area / "a.tar.gz").exists()
    assert sorted(os.listdir(outside)) == ["secret.txt"]


def test_compress_without_dereference_keeps_link(api, area, outside):
    (area / "src").mkdir()
    os.symlink(outside, area / "src" / "escape")

    response = api.post("filesystem/ops/compress", {"path": str(area / "src"), "targetPath": str(area / "a.tar.gz")})

    assert response.status_code == 204
    with tarfile.open(area / "a.tar.gz") as tar:
        link = tar.getmember("src/escape")
    assert link.issym()
    assert link.linkname == str(outside)


# -- Archives ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([(member("/abs/file"), b"x")], "absolute"),
        ([(member("../escape"), b"x")], ".."),
        ([(member("ok/../../escape"), b"x")], ".."),
        ([(member("hard", tarfile.LNKTYPE, "/etc/passwd"), None)], "hard link"),
        ([(member("dev", tarfile.CHRTYPE), None)], "device"),
        ([(member("link", tarfile.SYMTYPE, "/"), None), (member("link/planted"), b"x")], "symlink"),
    ],
    ids=["absolute", "dotdot", "inner-dotdot", "hard-link", "device", "symlink-parent-in-archive"],
)
def test_extract_rejects_member(api, area, members, reason):
    response = extract(api, area, tar_bytes(*members))

    assert response.status_code == 400
    assert reason in error_message(response)
    assert os.listdir(area / "out") == []


def test_extract_rejects_symlink_parent_on_disk(api, area, outside):
    (area / "out").mkdir()
    os.symlink(outside, area / "out" / "sub")

    response = extract(api, area, tar_bytes((member("sub/planted"), b"evil")))

    assert response.status_code == 400
    assert "symlink on disk" in error_message(response)
    assert sorted(os.listdir(outside)) == ["secret.txt"]


def test_transfer_extract_rejects_member(api, area):
    response = extract(api, area, tar_bytes((member("../escape"), b"x")), endpoint="filesystem/transfer/extract")

    assert response.status_code == 400
    assert not (area / "escape").exists()


def test_extract_target_through_link_rejected(api, area, outside):
    os.symlink(outside, area / "dir-link")
    (area / "archive.tar").write_bytes(tar_bytes((member("planted"), b"x")))

    response = api.post(
        "filesystem/ops/extract",
        {"path": str(area / "archive.tar"), "targetPath": str(area / "dir-link"), "compression": "none"},
    )

    assert_rejected(response)
    assert not (outside / "planted").exists()


def test_extract_allows_link_members_that_point_out(api, area):
    response = extract(api, area, tar_bytes((member("abs-link", tarfile.SYMTYPE, "/usr/bin/python3"), None)))

    assert response.status_code == 204
    assert os.readlink(area / "out" / "abs-link") == "/usr/bin/python3"


# -- Transfer jobs -------------------------------------------------------------------------


def test_transfer_paths_checked(api, area, outside):
    (area / "a").write_text("x")
    (area / "src").mkdir()
    os.symlink(outside, area / "src" / "escape")
    os.symlink(outside, area / "dir-link")

    move_out = api.post("filesystem/transfer/mv", {"path": str(area / "a"), "targetPath": str(outside / "a")})
    move_into_link = api.post("filesystem/transfer/mv", {"path": str(area / "a"), "targetPath": str(area / "dir-link")})
    copy_out = api.post("filesystem/transfer/cp", {"path": str(area / "a"), "targetPath": str(outside)})
    copy_dereferenced = api.post(
        "filesystem/transfer/cp", {"path": str(area / "src"), "targetPath": str(area / "copy"), "dereference": True}
    )
    remove_through_link = api.delete("filesystem/transfer/rm", path=str(area / "dir-link" / "secret.txt"))

    for response in (move_out, move_into_link, copy_out, copy_dereferenced, remove_through_link):
        assert_rejected(response)
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (area / "a").exists()
