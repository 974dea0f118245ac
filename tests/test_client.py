"""The API client's own logic against `httpx.MockTransport`: retries, deadlines, tokens, errors."""

from __future__ import annotations

import errno
import json

import httpx
import pytest
import trio

from firecrest_fs.auth import ClientCredentials, StaticToken, jwt_expiry
from firecrest_fs.client import FirecrestClient, RetryPolicy, Timeouts
from firecrest_fs.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    NotFoundError,
    ServerError,
    TooLargeError,
    errno_for,
)
from firecrest_fs.names import decode_listed_name

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


def make_client(handler, *, tokens=None, deadline=30.0, retry=FAST_RETRY) -> FirecrestClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return FirecrestClient(
        "http://127.0.0.1:9", "demo", tokens or StaticToken("t0"), http,
        timeouts=Timeouts(deadline=deadline), retry=retry,
    )


def error(status: int, message: str, **headers: str) -> httpx.Response:
    body = {"errorType": "error", "message": message, "causedBy": None, "data": None, "user": "u"}
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        ("plain.txt", b"plain.txt"),
        ("caf\\303\\251", "café".encode()),
        ("new\\nline", b"new\nline"),
        ("a\\023b", b"a\x13b"),
        ("back\\slash", b"back\\slash"),
        ("tab\\there", b"tab\there"),
        ("trailing\\", b"trailing\\"),
        ("日本", "日本".encode()),
    ],
)
def test_decode_listed_names(listed, expected):
    assert decode_listed_name(listed) == expected


async def test_get_retries_server_errors():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            return error(503, "The requested filesystem (/x on demo) is unhealthy.")
        return httpx.Response(200, json={"output": {"mode": 33188, "ino": 1, "dev": 2, "nlink": 1, "uid": 0,
                                                    "gid": 0, "size": 3, "atime": 4, "mtime": 5, "ctime": 6}})

    client = make_client(handler)
    result = await client.stat(b"/x/f")
    assert result.size == 3
    assert result.mtime == 5
    assert len(calls) == 3


async def test_retry_after_is_honoured(autojump_clock):
    times = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(trio.current_time())
        if len(times) == 1:
            return error(429, "Too many requests", **{"Retry-After": "2"})
        return httpx.Response(200, json={"output": []})

    client = make_client(handler)
    assert await client.ls(b"/x") == []
    assert times[1] - times[0] >= 2


async def test_retries_stop_at_attempt_limit():
    calls = []

    def handler(request):
        calls.append(request)
        return error(500, "Remote process failed with exit status:1")

    client = make_client(handler)
    with pytest.raises(ServerError):
        await client.ls(b"/x")
    assert len(calls) == FAST_RETRY.attempts


async def test_definite_errors_are_not_retried():
    calls = []

    def handler(request):
        calls.append(request)
        return error(404, "ls: cannot access '/x': No such file or directory")

    client = make_client(handler)
    with pytest.raises(NotFoundError) as raised:
        await client.ls(b"/x")
    assert len(calls) == 1
    assert errno_for(raised.value) == errno.ENOENT


async def test_deadline_bounds_a_stalled_server(autojump_clock):
    async def handler(request):
        await trio.sleep(1000)
        return httpx.Response(200, json={"output": []})

    client = make_client(handler, deadline=7.0)
    started = trio.current_time()
    with pytest.raises(DeadlineExceededError) as raised:
        await client.ls(b"/x")
    assert trio.current_time() - started == pytest.approx(7.0, abs=0.5)
    assert errno_for(raised.value) == errno.EIO


async def test_mkdir_checks_outcome_before_resending():
    sent = {"mkdir": 0, "stat": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/ops/mkdir"):
            sent["mkdir"] += 1
            return error(502, "Bad gateway")
        sent["stat"] += 1
        return httpx.Response(200, json={"output": {"mode": 16877, "ino": 1, "dev": 2, "nlink": 2, "uid": 0,
                                                    "gid": 0, "size": 4096, "atime": 1, "mtime": 1, "ctime": 1}})

    client = make_client(handler)
    await client.mkdir(b"/x/new")
    assert sent == {"mkdir": 1, "stat": 1}


async def test_file_exists_maps_to_eexist():
    client = make_client(lambda request: error(400, "Remote process failed: mkdir: cannot create directory: File exists"))
    with pytest.raises(AlreadyExistsError) as raised:
        await client.mkdir(b"/x/d")
    assert errno_for(raised.value) == errno.EEXIST


async def test_too_large_maps_to_efbig():
    client = make_client(lambda request: error(413, "File to download is too large."))
    with pytest.raises(TooLargeError) as raised:
        await client.download(b"/x/big")
    assert errno_for(raised.value) == errno.EFBIG


async def test_expired_token_is_refreshed_once():
    issued = []
    used = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            issued.append(request)
            return httpx.Response(200, json={"access_token": f"token{len(issued)}", "expires_in": 300})
        used.append(request.headers["Authorization"])
        if request.headers["Authorization"] == "Bearer token1":
            return error(401, "Access token expired")
        return httpx.Response(200, json={"output": []})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    tokens = ClientCredentials(http, "http://127.0.0.1:9/token", "id", "secret")
    client = FirecrestClient("http://127.0.0.1:9", "demo", tokens, http, retry=FAST_RETRY)
    assert await client.ls(b"/x") == []
    assert used == ["Bearer token1", "Bearer token2"]
    assert len(issued) == 2


async def test_client_credentials_token_is_reused():
    issued = []

    def handler(request: httpx.Request) -> httpx.Response:
        issued.append(dict(x.split("=") for x in request.content.decode().split("&")))
        return httpx.Response(200, json={"access_token": f"token{len(issued)}", "expires_in": 120})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    tokens = ClientCredentials(http, "http://127.0.0.1:9/token", "id", "s3cret")
    assert await tokens.token() == "token1"
    assert await tokens.token() == "token1"
    assert issued[0]["grant_type"] == "client_credentials"
    assert issued[0]["client_secret"] == "s3cret"


def test_jwt_expiry_reads_exp_claim():
    import base64

    payload = base64.urlsafe_b64encode(json.dumps({"exp": 1234567890}).encode()).rstrip(b"=").decode()
    assert jwt_expiry(f"e30.{payload}.sig") == 1234567890
    assert jwt_expiry("not-a-jwt") is None
