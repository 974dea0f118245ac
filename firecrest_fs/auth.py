"""Access tokens for FirecREST, in pyfirecrest's three conventions.

- `FIRECREST_TOKEN`: a static token, used as it is.
- `FIRECREST_TOKEN_COMMAND`: a shell command that prints a token; it runs again when the
  token is about to expire (read from the JWT's `exp` claim) or when the server rejects it.
- `FIRECREST_CLIENT_ID`, `FIRECREST_CLIENT_SECRET`, `AUTH_TOKEN_URL`: the OIDC
  client-credentials flow, with a new token requested well before the old one expires.

The server rejects tokens with less than 30 s of life left, so a token is renewed when less
than `REFRESH_MARGIN` seconds remain. Tokens and secrets are never logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Mapping

import httpx
import trio

from .errors import AuthenticationError, ConfigurationError, TransportError

log = logging.getLogger(__name__)

# Renew a token when it has less than this many seconds left. The server refuses tokens
# with under 30 s left, and a request may spend several seconds queued or retrying.
REFRESH_MARGIN = 60.0
# For tokens whose lifetime is unknown (not a JWT, no expires_in), run the source again
# after this many seconds.
UNKNOWN_LIFETIME = 300.0
TOKEN_COMMAND_TIMEOUT = 30.0


def jwt_expiry(token: str) -> float | None:
    """Return the `exp` claim of a JWT without verifying it, or None when there is none."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) else None


class TokenSource:
    """Supplier of bearer tokens; `token()` may be awaited by many tasks at once."""

    def __init__(self) -> None:
        self._token: str | None = None
        self._expires_at = 0.0  # wall-clock seconds; 0 means "fetch before use"
        self._lock = trio.Lock()

    async def token(self, *, refresh: bool = False) -> str:
        """Return a token with enough life left, fetching a new one when needed.

        With `refresh`, a token that was handed out before the call is replaced, because the
        server rejected it. Concurrent callers share one fetch.
        """
        stale = self._token
        async with self._lock:
            if refresh and self._token is not None and self._token == stale:
                self._expires_at = 0.0
            if self._token is None or time.time() > self._expires_at - REFRESH_MARGIN:
                self._token, lifetime_end = await self._fetch()
                self._expires_at = lifetime_end
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        raise NotImplementedError

    @property
    def can_refresh(self) -> bool:
        """Whether asking again can give a different token."""
        return True


class StaticToken(TokenSource):
    """A token given once, in FIRECREST_TOKEN; it cannot be renewed."""

    def __init__(self, token: str):
        super().__init__()
        self._static = token.strip()

    async def _fetch(self) -> tuple[str, float]:
        # Never considered stale: only the server can tell that it expired.
        return self._static, float("inf")

    @property
    def can_refresh(self) -> bool:
        return False


class CommandToken(TokenSource):
    """A token printed by a shell command, as FIRECREST_TOKEN_COMMAND gives it."""

    def __init__(self, command: str):
        super().__init__()
        self._command = command

    async def _fetch(self) -> tuple[str, float]:
        log.debug("running the token command")
        try:
            with trio.fail_after(TOKEN_COMMAND_TIMEOUT):
                result = await trio.run_process(
                    self._command, shell=True, capture_stdout=True, capture_stderr=True, check=False
                )
        except trio.TooSlowError:
            raise ConfigurationError(f"the token command did not finish within {TOKEN_COMMAND_TIMEOUT:.0f} s") from None
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip()[-500:]
            raise ConfigurationError(f"the token command failed with exit status {result.returncode}: {detail}")
        token = result.stdout.decode(errors="replace").strip()
        if not token:
            raise ConfigurationError("the token command printed no token")
        expiry = jwt_expiry(token)
        return token, expiry if expiry is not None else time.time() + UNKNOWN_LIFETIME + REFRESH_MARGIN


class ClientCredentials(TokenSource):
    """The OIDC client-credentials flow against the identity provider's token endpoint."""

    def __init__(self, http: httpx.AsyncClient, token_url: str, client_id: str, client_secret: str):
        super().__init__()
        self._http = http
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret

    async def _fetch(self) -> tuple[str, float]:
        log.debug("requesting a token from %s for client %s", self._token_url, self._client_id)
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        requested_at = time.time()
        try:
            response = await self._http.post(self._token_url, data=form)
        except httpx.HTTPError as exc:
            raise TransportError(f"token request to {self._token_url} failed: {exc!r}") from exc
        if response.status_code != 200:
            raise AuthenticationError(
                response.status_code,
                f"the token endpoint {self._token_url} rejected client {self._client_id}: {response.text[:300]}",
            )
        try:
            body = response.json()
            token = body["access_token"]
        except (ValueError, KeyError, TypeError):
            raise AuthenticationError(response.status_code, f"the token endpoint {self._token_url} sent no access_token") from None
        expires_in = body.get("expires_in")
        if isinstance(expires_in, (int, float)):
            return token, requested_at + float(expires_in)
        expiry = jwt_expiry(token)
        return token, expiry if expiry is not None else requested_at + UNKNOWN_LIFETIME + REFRESH_MARGIN


def token_source_from_env(env: Mapping[str, str], http: httpx.AsyncClient) -> TokenSource:
    """Choose the token source that the environment configures, in pyfirecrest's order."""
    if env.get("FIRECREST_TOKEN"):
        return StaticToken(env["FIRECREST_TOKEN"])
    if env.get("FIRECREST_TOKEN_COMMAND"):
        return CommandToken(env["FIRECREST_TOKEN_COMMAND"])
    client_id = env.get("FIRECREST_CLIENT_ID")
    client_secret = env.get("FIRECREST_CLIENT_SECRET")
    token_url = env.get("AUTH_TOKEN_URL")
    if client_id and client_secret and token_url:
        return ClientCredentials(http, token_url, client_id, client_secret)
    raise ConfigurationError(
        "no credentials: set FIRECREST_TOKEN, FIRECREST_TOKEN_COMMAND, or FIRECREST_CLIENT_ID, "
        "FIRECREST_CLIENT_SECRET and AUTH_TOKEN_URL"
    )

