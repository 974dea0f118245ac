"""Access tokens: an RS256 key made at start, a client-credentials token endpoint, and checks.

The checks and their 401 messages follow the real server (FirecREST v2 with
python-jose): unknown `kid`, bad signature, expiry, and a minimum remaining
lifetime of 30 seconds. The token endpoint behaves like an OAuth2 identity
provider's (RFC 6749, section 4.4 and 5.2).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import secrets
import time
from typing import Callable

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from firecrest_fs.server.errors import ApiError

log = logging.getLogger(__name__)

USERNAME_CLAIM = "preferred_username"
MIN_TOKEN_TTL = 30
TOKEN_SCOPE = "firecrest-v2 profile"

NOT_AUTHENTICATED = "Not authenticated"
TOKEN_INVALID = "Access token is invalid."
TOKEN_EXPIRED = "Access token expired"
TOKEN_EXPIRES_TOO_SOON = f"Access token expires too soon (less than {MIN_TOKEN_TTL}s remaining)."
KEY_NOT_FOUND = "Token's public key not found."


class TokenIssuer:
    """Signs access tokens with a key pair made at start, and validates them."""

    def __init__(self, issuer_url: str, username: str) -> None:
        self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public_key = self._private_key.public_key()
        self._key_id = secrets.token_hex(8)
        self.issuer_url = issuer_url
        self.username = username

    def mint(self, client_id: str, lifetime: float) -> str:
        """Return a signed token for the server's user, valid for `lifetime` seconds."""
        now = int(time.time())
        claims = {
            "iss": self.issuer_url,
            "sub": self.username,
            "azp": client_id,
            USERNAME_CLAIM: self.username,
            "scope": TOKEN_SCOPE,
            "iat": now,
            "exp": now + int(lifetime),
        }
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": self._key_id})

    def authenticate(self, authorization: str | None) -> str:
        """Validate an `Authorization` header value and return the token's username.

        Raises ApiError 401 with the real server's messages, or 400 when the token
        has no username claim.
        """
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, NOT_AUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})

        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise ApiError(401, TOKEN_INVALID) from exc
        if header.get("kid") != self._key_id:
            raise ApiError(401, KEY_NOT_FOUND)

        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise ApiError(401, TOKEN_EXPIRED) from exc
        except jwt.InvalidTokenError as exc:
            raise ApiError(401, TOKEN_INVALID) from exc

        if claims["exp"] - time.time() < MIN_TOKEN_TTL:
            raise ApiError(401, TOKEN_EXPIRES_TOO_SOON)
        username = claims.get(USERNAME_CLAIM)
        if not isinstance(username, str) or not username:
            # NOTE: the real server responds with 400 here, but its exact message is not known.
            raise ApiError(400, f"The access token has no '{USERNAME_CLAIM}' claim.")
        return username


def token_router(
    issuer: TokenIssuer,
    client_id: str,
    client_secret: str,
    lifetime_for_next_token: Callable[[], float],
) -> APIRouter:
    """Build the router of `POST /auth/token`, the client-credentials token endpoint.

    `lifetime_for_next_token` returns the lifetime in seconds of the token about to
    be issued, so that test knobs can shorten it.
    """
    router = APIRouter()

    @router.post("/auth/token")
    async def post_token(request: Request) -> JSONResponse:
        form = await request.form()
        grant_type = form.get("grant_type")
        request_id = form.get("client_id")
        request_secret = form.get("client_secret")

        basic = _basic_credentials(request.headers.get("authorization"))
        if basic is not None:
            request_id, request_secret = basic

        if not isinstance(grant_type, str) or not grant_type:
            return _oauth_error(400, "invalid_request", "Missing form parameter: grant_type")
        if grant_type != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type: {grant_type}")
        if not _same_secret(request_id, client_id) or not _same_secret(request_secret, client_secret):
            log.warning("token request rejected: invalid client credentials")
            headers = {"WWW-Authenticate": 'Basic realm="firecrest-fs-local"'} if basic else None
            return _oauth_error(401, "invalid_client", "Invalid client or Invalid client credentials", headers)

        lifetime = lifetime_for_next_token()
        token = issuer.mint(client_id, lifetime)
        log.debug("issued a token valid for %s s", lifetime)
        return JSONResponse(
            {
                "access_token": token,
                "expires_in": int(lifetime),
                "token_type": "Bearer",
                "scope": TOKEN_SCOPE,
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    return router


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")
    client, _, secret = decoded.partition(":")
    return client, secret


def _same_secret(given: object, expected: str) -> bool:
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _oauth_error(
    status_code: int, error: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status_code,
        headers=headers,
    )
