"""Exceptions of firecrest-fs and the one place that turns them into errno values.

The hierarchy::

    FirecrestError                 base of everything raised by the client
    ├── ApiError                   the server answered with an error status
    │   ├── NotFoundError          404                     -> ENOENT
    │   ├── PermissionDeniedError  403                     -> EACCES
    │   ├── AuthenticationError    401 after a token refresh -> EACCES
    │   ├── AlreadyExistsError     400 "File exists"       -> EEXIST
    │   ├── InvalidRequestError    other 400               -> EINVAL
    │   ├── TooLargeError          413                     -> EFBIG
    │   ├── NotSupportedError      501                     -> ENOTSUP
    │   └── ServerError            408, 424, 429, 5xx      -> EIO (transient)
    ├── TransportError             connection failed, reset or timed out -> EIO (transient)
    ├── DeadlineExceededError      a request ran past its overall deadline -> EIO
    ├── JobFailedError             a transfer job ended without success -> EIO
    └── ConfigurationError         bad URL, missing credentials, unknown system

Operations raise `FsError` with an explicit errno where the POSIX error does not
follow from a server status (ENOTEMPTY, EISDIR, EFBIG for a local limit, ...).
"""

from __future__ import annotations

import errno


class FirecrestError(Exception):
    """Base class of every error raised by the API client."""

    errno = errno.EIO


class ApiError(FirecrestError):
    """Raised when the server returns an error status for a request."""

    def __init__(self, status: int, message: str, *, method: str = "", url: str = ""):
        self.status = status
        self.message = message
        self.method = method
        self.url = url
        super().__init__(f"{method} {url}: HTTP {status}: {message}" if method else message)


class NotFoundError(ApiError):
    """Raised on 404: the path (or job, or system) does not exist."""

    errno = errno.ENOENT


class PermissionDeniedError(ApiError):
    """Raised on 403: the remote user may not do this."""

    errno = errno.EACCES


class AuthenticationError(ApiError):
    """Raised on 401 that persists after one token refresh."""

    errno = errno.EACCES


class AlreadyExistsError(ApiError):
    """Raised on 400 whose message contains "File exists"."""

    errno = errno.EEXIST


class InvalidRequestError(ApiError):
    """Raised on any other 400: a validation error or a path the server rejects."""

    errno = errno.EINVAL


class TooLargeError(ApiError):
    """Raised on 413: a file or a command's output is above max_ops_file_size."""

    errno = errno.EFBIG


class NotSupportedError(ApiError):
    """Raised on 501."""

    errno = errno.ENOTSUP


class ServerError(ApiError):
    """Raised on 408, 424, 429 and 5xx: the server may succeed if asked again."""

    errno = errno.EIO


class TransportError(FirecrestError):
    """Raised when no HTTP response arrived: refused, reset or timed-out connections."""

    errno = errno.EIO


class DeadlineExceededError(FirecrestError):
    """Raised when a request, retries included, runs past its overall deadline."""

    errno = errno.EIO


class JobFailedError(FirecrestError):
    """Raised when a transfer job ends in a failed state or without its success line."""

    errno = errno.EIO


class ConfigurationError(FirecrestError):
    """Raised for settings that cannot work: a missing URL, credentials or system."""

    errno = errno.EINVAL


class FsError(Exception):
    """Raised by the filesystem core with the errno a POSIX program expects."""

    def __init__(self, errno_value: int, message: str):
        self.errno = errno_value
        super().__init__(message)


def is_transient(exc: BaseException) -> bool:
    """Return whether asking again may succeed, the single rule for every retry."""
    return isinstance(exc, (ServerError, TransportError))


def errno_for(exc: BaseException) -> int:
    """Map an exception raised below the FUSE boundary to the errno to answer."""
    value = getattr(exc, "errno", None)
    if isinstance(exc, (FirecrestError, FsError, OSError)) and isinstance(value, int) and value > 0:
        return value
    return errno.EIO


def api_error_for(status: int, message: str, *, method: str = "", url: str = "") -> ApiError:
    """Build the exception for an error status, the one status-to-exception table."""
    if status == 404:
        cls: type[ApiError] = NotFoundError
    elif status == 403:
        cls = PermissionDeniedError
    elif status == 401:
        cls = AuthenticationError
    elif status == 400 and "File exists" in message:
        cls = AlreadyExistsError
    elif status == 400:
        cls = InvalidRequestError
    elif status == 413:
        cls = TooLargeError
    elif status == 501:
        cls = NotSupportedError
    elif status in (408, 424, 429) or status >= 500:
        cls = ServerError
    else:
        cls = InvalidRequestError
    return cls(status, message, method=method, url=url)
