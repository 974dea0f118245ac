"""The local server's authentication: token endpoint and the checks of every request."""

from __future__ import annotations

import base64
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from server_support import api_server  # noqa: F401 (fixture)


@pytest.fixture
def http(api_server):
    with httpx.Client(base_url=api_server.url, timeout=30.0) as client:
        yield client


def systems(http, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return http.get("/status/systems", headers=headers)


def forged_token(header_from: str, claims: dict) -> str:
    """Sign `claims` with a key of our own, under the key id of a real token."""
    key_id = jwt.get_unverified_header(header_from)["kid"]
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": key_id})


def test_token_endpoint_with_form_credentials(api_server, http):
    response = http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": api_server.client_id,
            "client_secret": api_server.client_secret,
        },
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "token_type", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 300
    assert claims["preferred_username"]
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "RS256"


def test_token_endpoint_with_basic_credentials(api_server, http):
    response = http.post(
        "/auth/token",
        data={"grant_type": "client_credentials"},
        auth=(api_server.client_id, api_server.client_secret),
    )

    assert response.status_code == 200
    assert systems(http, f"Bearer {response.json()['access_token']}").status_code == 200


def test_token_endpoint_wrong_secret(api_server, http):
    response = http.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "client_id": api_server.client_id, "client_secret": "wrong"},
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "access_token" not in response.json()


def test_token_endpoint_wrong_basic_credentials(api_server, http):
    response = http.post("/auth/token", data={"grant_type": "client_credentials"}, auth=(api_server.client_id, "x"))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_token_endpoint_grant_type_errors(api_server, http):
    credentials = {"client_id": api_server.client_id, "client_secret": api_server.client_secret}

    missing = http.post("/auth/token", data=credentials)
    unsupported = http.post("/auth/token", data={**credentials, "grant_type": "password"})

    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    assert unsupported.status_code == 400
    assert unsupported.json()["error"] == "unsupported_grant_type"


def test_missing_header_is_401_not_authenticated(http):
    response = systems(http, None)

    assert response.status_code == 401
    assert response.json()["message"] == "Not authenticated"
    assert response.json()["user"] is None
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_non_bearer_header_is_401_not_authenticated(api_server, http):
    basic = "Basic " + base64.b64encode(f"{api_server.client_id}:{api_server.client_secret}".encode()).decode()

    response = systems(http, basic)

    assert response.status_code == 401
    assert response.json()["message"] == "Not authenticated"


def test_garbage_token_is_invalid(http):
    response = systems(http, "Bearer not-a-jwt")

    assert response.status_code == 401
    assert response.json()["message"] == "Access token is invalid."


def test_bad_signature_is_invalid(api_server, http):
    now = int(time.time())
    token = forged_token(api_server.token(), {"preferred_username": "root", "iat": now, "exp": now + 300})

    response = systems(http, f"Bearer {token}")

    assert response.status_code == 401
    assert response.json()["message"] == "Access token is invalid."


def test_unknown_key_id(http):
    now = int(time.time())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"preferred_username": "u", "exp": now + 300}, other_key, algorithm="RS256", headers={"kid": "x"})

    response = systems(http, f"Bearer {token}")

    assert response.status_code == 401
    assert response.json()["message"] == "Token's public key not found."


def test_expired_token(api_server, http):
    api_server.set_faults([{"kind": "token_expiry", "seconds": 0, "count": 1}])
    try:
        token = api_server.token()
    finally:
        api_server.clear_faults()
    time.sleep(1.1)

    response = systems(http, f"Bearer {token}")

    assert response.status_code == 401
    assert response.json()["message"] == "Access token expired"


def test_token_with_less_than_30_seconds_left(api_server, http):
    api_server.set_faults([{"kind": "token_expiry", "seconds": 20, "count": 1}])
    try:
        short = api_server.token()
    finally:
        api_server.clear_faults()

    response = systems(http, f"Bearer {short}")

    assert response.status_code == 401
    assert response.json()["message"] == "Access token expires too soon (less than 30s remaining)."
    assert systems(http, f"Bearer {api_server.token()}").status_code == 200


def test_liveness_needs_no_token(api_server, http):
    response = http.get("/status/liveness/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"healthcheckRuns", "lastUpdate"}
    assert list(body["healthcheckRuns"]) == [api_server.system]


def test_authenticated_user_in_error_body_and_header(api_server, http):
    token = api_server.token()

    response = http.get("/filesystem/demo/ops/ls", params={"path": "/etc"}, headers={"Authorization": f"Bearer {token}"})

    username = jwt.decode(token, options={"verify_signature": False})["preferred_username"]
    assert response.status_code == 400
    assert response.json()["user"] == username
    assert response.headers["F7T-AuthUsername"] == username


def test_secrets_not_on_command_line(api_server):
    with open(f"/proc/{api_server.pid}/cmdline", "rb") as cmdline:
        arguments = cmdline.read().decode()

    assert api_server.client_secret not in arguments
    assert api_server.client_id not in arguments
