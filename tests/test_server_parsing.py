"""The local server's pure helpers: `ls` parsing, status mapping, `id` parsing, quoting."""

from __future__ import annotations

import pytest

from firecrest_fs.server.commands import UNMATCHED_QUOTE_MESSAGE, CommandResult, quote, raise_for_result
from firecrest_fs.server.errors import ApiError
from firecrest_fs.server.listing import parse_ls
from firecrest_fs.server.routes_status import parse_id_output

RECURSIVE_OUTPUT = """\
"/home/u/dir":
total 8
-rw-r--r-- 1 u users    5 2024-05-16T13:48:53 "a file.txt"
lrwxrwxrwx 1 u users   10 2024-05-16T13:48:53 "lnk" -> "a file.txt"
drwxr-xr-x 2 u users 4096 2024-05-16T13:48:53 "caf\\303\\251"
crw-rw-rw- 1 root root 1, 3 2024-05-16T13:48:53 "null"

"/home/u/dir/caf\\303\\251":
total 0
-rw-r--r-- 1 u users 0 2024-05-16T13:48:53 "q\\"uote"
"""


def test_parse_recursive_listing():
    files = parse_ls(RECURSIVE_OUTPUT)

    names = [entry["name"] for entry in files]
    assert names == ["a file.txt", "lnk", "caf\\303\\251", 'caf\\303\\251/q"uote']
    assert files[1]["linkTarget"] == "a file.txt"
    assert files[2]["size"] == "4096"
    assert files[0] == {
        "name": "a file.txt",
        "type": "-",
        "linkTarget": None,
        "user": "u",
        "group": "users",
        "permissions": "rw-r--r--",
        "lastModified": "2024-05-16T13:48:53",
        "size": "5",
    }


def test_parse_undoes_only_doubled_backslash():
    output = '-rw-r--r-- 1 u g 0 2024-05-16T13:48:53 "back\\\\slash\\nnew"\n'

    (entry,) = parse_ls(output)

    assert entry["name"] == "back\\slash\\nnew"


def test_parse_skips_lines_that_do_not_match():
    output = "total 4\nsomething odd\n-rw-r--r-- 1 u g 0 2024-05-16T13:48:53 \"ok\"\n"

    assert [entry["name"] for entry in parse_ls(output)] == ["ok"]


@pytest.mark.parametrize(
    ("exit_status", "stderr", "status"),
    [
        (124, "", 408),
        (2, "ls: cannot access '/x': No such file or directory", 404),
        (1, "rm: cannot remove '/x': Permission denied", 403),
        (1, "chown: changing ownership of '/x': Operation not permitted", 403),
        (1, "mkdir: cannot create directory '/x': File exists", 400),
        (1, "chown: invalid user: 'nobody-x:users'", 400),
        (1, "tar: something else", 500),
    ],
)
def test_status_mapping(exit_status, stderr, status):
    with pytest.raises(ApiError) as raised:
        raise_for_result(CommandResult(stdout=b"", stderr=stderr.encode(), exit_status=exit_status))

    assert raised.value.status_code == status
    expected = f"Remote process failed with exit status:{exit_status}"
    if stderr:
        expected += f" and error message:{stderr}"
    assert raised.value.message == expected


def test_success_is_not_an_error():
    raise_for_result(CommandResult(stdout=b"ok", stderr=b"warning", exit_status=0))


def test_quote_rejects_single_quote():
    assert quote("/a b") == "'/a b'"
    with pytest.raises(ApiError) as raised:
        quote("/it's")
    assert raised.value.status_code == 500
    assert raised.value.message == UNMATCHED_QUOTE_MESSAGE


def test_parse_id_output_with_groups():
    parsed = parse_id_output("uid=1000(alice) gid=100(users) groups=100(users),27(sudo),998\n")

    assert parsed["user"] == {"id": "1000", "name": "alice"}
    assert parsed["group"] == {"id": "100", "name": "users"}
    assert parsed["groups"] == [
        {"id": "100", "name": "users"},
        {"id": "27", "name": "sudo"},
        {"id": "998", "name": "998"},
    ]
