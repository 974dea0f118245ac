"""Remote names and paths: decoding what `ops/ls` prints, and checking what may be sent.

Names are bytes inside the filesystem, as the kernel passes them. The API carries paths as
JSON and query strings, so a path is sent as text, and a name that is not valid UTF-8 has no
faithful form on the wire.
"""

from __future__ import annotations

import errno
import posixpath

from .errors import FsError

# The letter escapes of GNU ls --quoting-style=c, mapped to the byte they stand for.
_LETTER_ESCAPES = {
    "a": 0x07,
    "b": 0x08,
    "t": 0x09,
    "n": 0x0A,
    "v": 0x0B,
    "f": 0x0C,
    "r": 0x0D,
    "e": 0x1B,
    '"': 0x22,
    "?": 0x3F,
}
_OCTAL_DIGITS = "01234567"


def decode_listed_name(text: str) -> bytes:
    """Decode a name as `ops/ls` returns it into the name's real bytes.

    The server has already turned the doubled backslash of `ls --quoting-style=c` back into
    one, but leaves `\\NNN` octal escapes and letter escapes such as `\\n` as they are. Both
    are decoded here. A backslash that starts no escape stays a backslash, so a name that
    really contains `\\101` lists the same as `A`: the server's output cannot tell them apart.
    """
    out = bytearray()
    i = 0
    length = len(text)
    while i < length:
        char = text[i]
        if char != "\\" or i + 1 >= length:
            out += char.encode("utf-8", "surrogateescape")
            i += 1
            continue
        following = text[i + 1]
        digits = following
        if following in _OCTAL_DIGITS:
            j = i + 2
            while j < length and j < i + 4 and text[j] in _OCTAL_DIGITS:
                digits += text[j]
                j += 1
            if len(digits) == 3 and int(digits, 8) <= 0xFF:
                out.append(int(digits, 8))
                i = j
                continue
        if following in _LETTER_ESCAPES:
            out.append(_LETTER_ESCAPES[following])
            i += 2
            continue
        out += b"\\"
        i += 1
    return bytes(out)


def to_wire(path: bytes) -> str:
    """Return a remote path as the text the API carries, or raise EINVAL.

    A `'` breaks every server command, because the server puts paths inside single quotes
    without escaping them, and bytes that are not UTF-8 cannot travel in JSON.
    """
    if b"'" in path:
        raise FsError(errno.EINVAL, f"{path!r}: names containing a single quote (') cannot be handled by FirecREST")
    try:
        return path.decode("utf-8")
    except UnicodeDecodeError:
        raise FsError(errno.EINVAL, f"{path!r}: names that are not valid UTF-8 cannot be sent to FirecREST") from None


def join(parent: bytes, name: bytes) -> bytes:
    """Join a remote directory path and an entry name."""
    if parent == b"/":
        return b"/" + name
    return parent + b"/" + name


def split(path: bytes) -> tuple[bytes, bytes]:
    """Split a remote path into its parent directory and its last name."""
    parent, name = posixpath.split(path)
    return parent or b"/", name


def is_within(path: bytes, directory: bytes) -> bool:
    """Return whether `path` is `directory` itself or lies below it."""
    return path == directory or path.startswith(directory.rstrip(b"/") + b"/")
