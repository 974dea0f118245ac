"""Parsing `ls -l --quoting-style=c` output into FirecREST File objects.

The real server matches each line with a regular expression and splits the
quoted name with `shlex`. That undoes `\\\\` and `\\"` but leaves `\\NNN` and `\\n`
escapes as they are. Lines that do not match are skipped, device files included.
This module reproduces that result, quirks included.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from firecrest_fs.server.commands import quote

LS_OPTIONS = "-l --quoting-style=c --time-style='+%Y-%m-%dT%H:%M:%S'"

# One entry of `ls -l`: mode string, link count, owner, group, size, time, quoted name.
# Device files print "major, minor" instead of a size, so they do not match.
_ENTRY = re.compile(
    r"^(?P<type>\S)(?P<permissions>\S+)\s+\d+\s+(?P<user>\S+)\s+(?P<group>\S+)\s+"
    r"(?P<size>\d+)\s+(?P<last_modified>[0-9T:-]+)\s+(?P<name>.+)$"
)

# The header `ls -R` prints before the entries of each directory.
_DIRECTORY_HEADER = re.compile(r'^"(?P<directory>.+)":$')


def ls_command(
    path: str,
    *,
    show_hidden: bool = False,
    numeric_uid: bool = False,
    recursive: bool = False,
    dereference: bool = False,
    directory_only: bool = False,
) -> str:
    """Build the real server's `ls` command line."""
    options = [LS_OPTIONS]
    if show_hidden:
        options.append("-A")
    if numeric_uid:
        options.append("--numeric-uid-gid")
    if directory_only:
        options.append("-d")
    if recursive:
        options.append("-R")
    if dereference:
        options.append("-L")
    return f"ls {' '.join(options)} -- {quote(path)}"


def parse_ls(output: str) -> list[dict[str, Any]]:
    """Parse `ls -l` output, recursive or not, into File objects.

    In a recursive listing, names are prefixed with the directory relative to the
    first directory header. Like the real server, the prefix keeps the C escapes of
    the header, because only the entry name goes through `shlex`.
    """
    lines = output.splitlines()
    if not lines or not _DIRECTORY_HEADER.match(lines[0]):
        return _parse_entries(lines, prefix="")

    files: list[dict[str, Any]] = []
    top_directory: str | None = None
    prefix = ""
    block: list[str] = []
    for line in lines:
        header = _DIRECTORY_HEADER.match(line)
        if header is None:
            block.append(line)
            continue
        files += _parse_entries(block, prefix)
        block = []
        directory = header.group("directory").rstrip("/") + "/"
        if top_directory is None:
            top_directory = directory
        prefix = directory.removeprefix(top_directory)
    files += _parse_entries(block, prefix)
    return files


def _parse_entries(lines: list[str], prefix: str) -> list[dict[str, Any]]:
    files = []
    for line in lines:
        match = _ENTRY.match(line)
        if match is None:
            continue
        try:
            tokens = shlex.split(match.group("name"))
        except ValueError:
            continue
        if len(tokens) == 1:
            name, link_target = tokens[0], None
        elif len(tokens) == 3:
            name, link_target = tokens[0], tokens[2]
        else:
            continue
        files.append(
            {
                "name": prefix + name,
                "type": match.group("type"),
                "linkTarget": link_target,
                "user": match.group("user"),
                "group": match.group("group"),
                "permissions": match.group("permissions"),
                "lastModified": match.group("last_modified"),
                "size": match.group("size"),
            }
        )
    return files
