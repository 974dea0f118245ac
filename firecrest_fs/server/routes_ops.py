"""Synchronous filesystem endpoints (`/filesystem/{system_name}/ops/...`).

Each endpoint confines its paths, builds the real server's command line, runs it
under the command timeout and output limit, and shapes the response like the real
server.
"""

from __future__ import annotations

import asyncio
import base64
import os
import posixpath
import shlex
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile

from firecrest_fs.server.app import ServerState, checked_request_path, server_state
from firecrest_fs.server.commands import quote
from firecrest_fs.server.errors import ApiError
from firecrest_fs.server.listing import ls_command, parse_ls
from firecrest_fs.server.models import (
    COMPRESSION_FLAGS,
    ChmodRequest,
    ChownRequest,
    CompressRequest,
    ExtractRequest,
    MakeDirRequest,
    SymlinkRequest,
)

router = APIRouter(prefix="/filesystem/{system_name}/ops")

# Default `size` of `ops/view`: a fixed 5 MiB in the real server, whatever the
# configured `max_ops_file_size`, so that view without `size` fails with 400 below it.
VIEW_DEFAULT_SIZE = 5 * 1024 * 1024

STAT_FORMAT = "'%f %i %d %h %u %g %s %X %Y %Z'"

CheckedPath = Annotated[str, Depends(checked_request_path)]


def _state(request: Request) -> ServerState:
    return server_state(request)


async def _run(state: ServerState, command: str, *, stdin: bytes | None = None) -> str:
    result = await state.runner.run_checked(command, stdin=stdin)
    return result.stdout_text


async def _listed_entry(state: ServerState, command: str, path: str) -> dict[str, Any] | None:
    """Run `<command> && ls -ld <path>` and return the File object of `path`."""
    output = await _run(state, f"{command} && {ls_command(path, directory_only=True)}")
    files = parse_ls(output)
    return files[0] if files else None


# -- Reading ---------------------------------------------------------------------


@router.get("/ls")
async def get_ls(
    request: Request,
    checked_path: CheckedPath,
    path: str,
    show_hidden: Annotated[bool, Query(alias="showHidden")] = False,
    numeric_uid: Annotated[bool, Query(alias="numericUid")] = False,
    recursive: bool = False,
    dereference: bool = False,
) -> dict[str, Any]:
    state = _state(request)
    state.policy.confine(path, follow=dereference)
    if dereference:
        await asyncio.to_thread(state.policy.check_tree_links, path, recursive=recursive)
    command = ls_command(
        path, show_hidden=show_hidden, numeric_uid=numeric_uid, recursive=recursive, dereference=dereference
    )
    return {"output": parse_ls(await _run(state, command))}


@router.get("/stat")
async def get_stat(request: Request, checked_path: CheckedPath, path: str, dereference: bool = False) -> dict[str, Any]:
    state = _state(request)
    state.policy.confine(path, follow=dereference)
    option = "--dereference " if dereference else ""
    output = await _run(state, f"stat {option}-c {STAT_FORMAT} -- {quote(path)}")
    values = output.split()
    if len(values) != 10:
        raise ApiError(500, f"Unable to parse the output of stat: {output.strip()}")
    mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime = values
    return {
        "output": {
            "mode": int(mode, 16),
            "ino": int(ino),
            "dev": int(dev),
            "nlink": int(nlink),
            "uid": int(uid),
            "gid": int(gid),
            "size": int(size),
            "atime": int(atime),
            "ctime": int(ctime),
            "mtime": int(mtime),
        }
    }


@router.get("/view")
async def get_view(
    request: Request,
    checked_path: CheckedPath,
    path: str,
    size: int | None = VIEW_DEFAULT_SIZE,
    offset: int | None = 0,
) -> dict[str, Any]:
    state = _state(request)
    limit = state.config.max_ops_file_size
    offset = offset or 0
    if offset < 0:
        raise ApiError(400, "`offset` value must be an integer value equal or greater than 0")
    if size is None:
        size = VIEW_DEFAULT_SIZE
    if size <= 0:
        raise ApiError(400, "`size` value must be an integer value greater than 0")
    if size > limit:
        raise ApiError(400, f"`size` value must be less than {limit} bytes")

    state.policy.confine(path, follow=True)
    # Two blocks are read so that an offset inside the first block still yields
    # `size` characters. The slice is taken over decoded characters, not bytes.
    output = await _run(state, f"dd if={quote(path)} bs={size} skip={offset // size} count=2")
    start = offset % size
    return {"output": output[start : start + size]}


def _head_tail_option(name: str, value: int, sign: str) -> str:
    return f"--{name}='{sign}{value}' "


@router.get("/head")
async def get_head(
    request: Request,
    checked_path: CheckedPath,
    path: str,
    file_bytes: Annotated[int | None, Query(alias="bytes")] = None,
    lines: int | None = None,
    skip_trailing: Annotated[bool, Query(alias="skipTrailing")] = False,
) -> dict[str, Any]:
    state = _state(request)
    if lines and file_bytes:
        raise ApiError(400, "Only one of `bytes` or `lines` can be specified.")
    state.policy.confine(path, follow=True)
    sign = "-" if skip_trailing else ""
    options = ""
    if file_bytes:
        options += _head_tail_option("bytes", file_bytes, sign)
    if lines:
        options += _head_tail_option("lines", lines, sign)
    content = await _run(state, f"head {options}-- {quote(path)}")

    end_position = 10
    if lines is not None:
        end_position = -lines if skip_trailing else lines
    elif file_bytes is not None:
        end_position = -file_bytes if skip_trailing else file_bytes
    return {
        "output": {
            "content": content,
            "contentType": "bytes" if file_bytes else "lines",
            "startPosition": 0,
            "endPosition": end_position,
        }
    }


@router.get("/tail")
async def get_tail(
    request: Request,
    checked_path: CheckedPath,
    path: str,
    file_bytes: Annotated[int | None, Query(alias="bytes")] = None,
    lines: int | None = None,
    skip_heading: Annotated[bool, Query(alias="skipHeading")] = False,
) -> dict[str, Any]:
    state = _state(request)
    if lines and file_bytes:
        raise ApiError(400, "Only one of `bytes` or `lines` can be specified.")
    state.policy.confine(path, follow=True)
    sign = "+" if skip_heading else ""
    options = ""
    if file_bytes:
        options += _head_tail_option("bytes", file_bytes, sign)
    if lines:
        options += _head_tail_option("lines", lines, sign)
    content = await _run(state, f"tail {options}-- {quote(path)}")

    start_position = 10
    if lines is not None:
        start_position = lines if skip_heading else -lines
    elif file_bytes is not None:
        start_position = file_bytes if skip_heading else -file_bytes
    return {
        "output": {
            "content": content,
            "contentType": "bytes" if file_bytes else "lines",
            "startPosition": start_position,
            "endPosition": -1,
        }
    }


@router.get("/checksum")
async def get_checksum(request: Request, checked_path: CheckedPath, path: str) -> dict[str, Any]:
    state = _state(request)
    state.policy.confine(path, follow=True)
    output = await _run(state, f"sha256sum -- {quote(path)}")
    return {"output": {"algorithm": "SHA256", "checksum": output.split()[0] if output.split() else ""}}


@router.get("/file")
async def get_file(request: Request, checked_path: CheckedPath, path: str) -> dict[str, Any]:
    state = _state(request)
    state.policy.confine(path, follow=True)
    output = await _run(state, f"file -b -- {quote(path)}")
    return {"output": output.strip()}


@router.get("/download")
async def get_download(request: Request, checked_path: CheckedPath, path: str) -> Response:
    state = _state(request)
    state.policy.confine(path, follow=True)
    output = await _run(state, f"base64 --wrap=0 -- {quote(path)}")
    content = base64.b64decode(output)
    # Reachable only in theory: base64 output of a file this large already reaches
    # the output limit. The real server checks in this order too.
    if len(content) > state.config.max_ops_file_size:
        raise ApiError(413, "File to download is too large.")
    return Response(content=content, media_type="application/octet-stream")


# -- Changing ---------------------------------------------------------------------


@router.post("/upload", status_code=204)
async def post_upload(
    request: Request,
    checked_path: CheckedPath,
    path: Annotated[str, Query(description="Target directory")],
    file: Annotated[UploadFile, File(description="File to be uploaded as `multipart/form-data`")],
) -> Response:
    state = _state(request)
    target = f"{path}/{file.filename}"
    raw = await file.read()
    if len(raw) > state.config.max_ops_file_size:
        raise ApiError(413, "File to upload is too large.")
    state.policy.confine(path, follow=True)
    state.policy.confine(target, follow=True, allow_root=False)
    # An empty file sends empty stdin without end-of-file: the command then waits
    # until the timeout (408), after the shell redirect has created the file.
    await _run(state, f"base64 -d > {quote(target)}", stdin=base64.b64encode(raw))
    return Response(status_code=204)


@router.post("/mkdir", status_code=201)
async def post_mkdir(request: Request, checked_path: CheckedPath, body: MakeDirRequest) -> dict[str, Any]:
    state = _state(request)
    state.policy.confine(body.path, follow=False)
    option = "-p " if body.parent else ""
    command = f"mkdir {option}-- {quote(body.path)}"
    return {"output": await _listed_entry(state, command, body.path)}


@router.delete("/rm", status_code=204)
async def delete_rm(request: Request, checked_path: CheckedPath, path: str) -> Response:
    state = _state(request)
    state.policy.confine(path, follow=False, allow_root=False)
    await _run(state, f"rm -r --interactive=never -- {quote(path)}")
    return Response(status_code=204)


@router.put("/chmod")
async def put_chmod(request: Request, checked_path: CheckedPath, body: ChmodRequest) -> dict[str, Any]:
    state = _state(request)
    state.policy.confine(body.path, follow=True)
    command = f"chmod -v {quote(body.mode)} -- {quote(body.path)}"
    return {"output": await _listed_entry(state, command, body.path)}


@router.put("/chown")
async def put_chown(request: Request, checked_path: CheckedPath, body: ChownRequest) -> dict[str, Any]:
    state = _state(request)
    state.policy.confine(body.path, follow=True)
    command = f"chown -v {quote(body.owner)}:{quote(body.group)} -- {quote(body.path)}"
    return {"output": await _listed_entry(state, command, body.path)}


@router.post("/symlink", status_code=201)
async def post_symlink(request: Request, checked_path: CheckedPath, body: SymlinkRequest) -> dict[str, Any]:
    state = _state(request)
    state.policy.confine(body.path, follow=True)
    # `ln -s` creates the link inside `linkPath` when that is a directory, so the
    # link path is resolved like a path the command follows.
    state.policy.confine(body.link_path, follow=True, allow_root=False)
    command = f"ln -s -- {quote(body.path)} {quote(body.link_path)}"
    return {"output": await _listed_entry(state, command, body.link_path)}


@router.post("/compress", status_code=204)
async def post_compress(request: Request, checked_path: CheckedPath, body: CompressRequest) -> Response:
    state = _state(request)
    command = await asyncio.to_thread(compress_command, state, body)
    await _run(state, command)
    return Response(status_code=204)


@router.post("/extract", status_code=204)
async def post_extract(request: Request, checked_path: CheckedPath, body: ExtractRequest) -> Response:
    state = _state(request)
    await asyncio.to_thread(check_extract, state, body)
    await _run(state, extract_command(body))
    return Response(status_code=204)


# -- tar, shared with the transfer jobs ------------------------------------------------


def compress_command(state: ServerState, body: CompressRequest) -> str:
    """Confine a compress request and return its `tar` command line.

    It walks the source tree when `dereference` is set, so async callers run it in a thread.

    With `matchPattern`, the real server runs `find` in the parent directory of
    `path` and always uses gzip. NOTE: the real server puts that directory in the
    command without quotes. This server quotes it so that no path can inject a
    command, which also makes a directory with spaces work here but not there.
    """
    policy = state.policy
    source_directory = posixpath.dirname(body.path)
    source_name = posixpath.basename(body.path)
    policy.confine(body.path, follow=body.dereference)
    if body.dereference:
        policy.check_tree_links(body.path, recursive=True)
    policy.check_request_path(body.target_path)
    policy.confine(body.target_path, follow=True, allow_root=False)
    options = "--dereference " if body.dereference else ""

    if body.match_pattern:
        policy.confine(source_directory, follow=True)
        if body.dereference:
            policy.check_tree_links(source_directory, recursive=True)
        pipeline = (
            f"cd {quote(source_directory)} && find . -type f -regex {quote(body.match_pattern)} -print0 "
            f"| tar {options}-czvf {quote(body.target_path)} --null --files-from -"
        )
        return f"bash -c {shlex.quote(pipeline)}"

    flag = COMPRESSION_FLAGS[body.compression]
    return (
        f"tar {options}-c{flag}vf {quote(body.target_path)} "
        f"-C {quote(source_directory)} {quote(source_name)}"
    )


def check_extract(state: ServerState, body: ExtractRequest) -> None:
    """Confine an extract request and check every member of its archive.

    It reads the whole archive, so async callers run it in a thread.
    """
    policy = state.policy
    policy.check_request_path(body.target_path)
    archive = policy.confine(body.path, follow=True)
    target = policy.confine(body.target_path, follow=True)
    if not os.path.isfile(archive):
        # Let tar report the missing or unreadable archive as the real server does.
        return
    policy.check_archive(archive, target)


def extract_command(body: ExtractRequest) -> str:
    flag = COMPRESSION_FLAGS[body.compression]
    return f"tar -x{flag}f {quote(body.path)} -C {quote(body.target_path)}"
