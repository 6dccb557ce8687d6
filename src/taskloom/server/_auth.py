"""The HTTP API's bearer token: made on first start, kept private in the user's config folder."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

import platformdirs

from taskloom.errors import ConfigError, UserError

__all__ = ["TOKEN_BYTES", "check_token", "load_or_create_token", "token_path", "valid_token"]

TOKEN_BYTES = 32
"""Random bytes in a generated token (43 URL-safe characters)."""
_MAX_TOKEN = 512
"""Characters a token may have; a longer one is a mistake (a file pasted in)."""


def token_path() -> Path:
    """Where the server keeps its token: `token` in taskloom's user config folder."""
    return platformdirs.user_config_path("taskloom") / "token"


def check_token(token: str) -> str:
    """A token given by the user (`--token`), checked.

    Returns:
        The token, without surrounding whitespace.

    Raises:
        UserError: if it is empty, too long, or not printable ASCII without spaces
            (a header could not carry it).

    """
    token = token.strip()
    if not token:
        raise UserError("the token is empty")
    if len(token) > _MAX_TOKEN:
        raise UserError(f"the token is longer than {_MAX_TOKEN} characters")
    if not all("!" <= c <= "~" for c in token):
        raise UserError("a token is printable ASCII with no spaces (a header carries it)")
    return token


def load_or_create_token(path: Path | None = None) -> tuple[str, bool]:
    """The token kept at `path` (default `token_path()`), made there if there is none.

    A new token is written with mode 0600 (only its owner reads it), in a
    folder made with mode 0700.

    Returns:
        The token, and whether it was made just now (the server prints a new one once).

    Raises:
        ConfigError: if the file cannot be read or written, or holds no valid token.

    """
    where = path or token_path()
    try:
        text = where.read_text(encoding="ascii")
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the token file {where}: {_reason(exc)}") from exc
    else:
        try:
            return check_token(text), False
        except UserError as exc:
            raise ConfigError(f"{where}: {exc}; delete the file to make a new token") from exc
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        where.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token + "\n")
    except FileExistsError:  # another server made it meanwhile: use that one
        return load_or_create_token(where)
    except OSError as exc:
        raise ConfigError(f"cannot write the token file {where}: {_reason(exc)}") from exc
    return token, True


def valid_token(given: str | None, token: str) -> bool:
    """Whether `given` is the token, compared in constant time."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or exc)
