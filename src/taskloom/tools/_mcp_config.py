"""MCP server configuration: the `mcpServers` file every MCP client reads.

    {"mcpServers": {
        "time": {"command": "uvx", "args": ["mcp-server-time"], "env": {}},
        "docs": {"url": "http://127.0.0.1:8000/mcp", "headers": {"Authorization": "..."}}
    }}

Each server may also carry taskloom's own keys: `max_concurrency` (calls to
the server at once), `timeout` (seconds per call) and `idempotent` (true or
false for all its tools, over what their annotations say). Keys other MCP
clients write (`type`, `disabled`, ...) are accepted; `disabled` servers are
left out.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from taskloom._text import clip, quoted, short_repr
from taskloom.errors import ConfigError

__all__ = ["ENV_VAR", "ServerConfig", "config_sources", "load_servers"]

ENV_VAR = "TASKLOOM_MCP"
"""The environment variable naming the default MCP configuration file of the command line."""

_SERVER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A server name: it qualifies tool names (`SERVER.TOOL`), so it has no `.` of its own."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerConfig:
    """One MCP server, as the configuration describes it."""

    name: str
    """The server's name: the key under `mcpServers`."""
    source: str
    """Where the configuration came from (a file's path, or `<mapping>`), for messages."""
    command: str | None = None
    """The program to start for a stdio server; None for an HTTP server."""
    args: tuple[str, ...] = ()
    """Arguments of `command`."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment variables for `command`, over a safe default environment."""
    cwd: str | None = None
    """The folder to start `command` in; None for the current one."""
    url: str | None = None
    """The Streamable HTTP endpoint of an HTTP server; None for a stdio server."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Headers sent with every HTTP request (authorisation, say)."""
    max_concurrency: int | None = None
    """At most this many calls to the server at once; None for no limit."""
    timeout: float | None = None
    """Seconds one call may take before it is cancelled; None for no limit."""
    idempotent: bool | None = None
    """Whether every tool of the server is idempotent; None to read each tool's annotations."""

    @property
    def transport(self) -> str:
        """`stdio` or `http`."""
        return "stdio" if self.command is not None else "http"


def config_sources(given: Sequence[str | os.PathLike[str]] = ()) -> list[str | os.PathLike[str]]:
    """The configuration files to use: those given, else the one `TASKLOOM_MCP` names.

    Returns:
        The files, possibly none.

    """
    if given:
        return list(given)
    default = os.environ.get(ENV_VAR, "").strip()
    return [default] if default else []


class _Entry(pydantic.BaseModel):
    """One entry under `mcpServers`, as read from JSON."""

    model_config = pydantic.ConfigDict(extra="allow", strict=True)

    command: str | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = {}
    max_concurrency: int | None = pydantic.Field(default=None, ge=1)
    timeout: float | None = pydantic.Field(default=None, gt=0, allow_inf_nan=False)
    idempotent: bool | None = None
    disabled: bool = False


def load_servers(
    sources: Iterable[str | os.PathLike[str] | Mapping[str, Any] | ServerConfig],
) -> list[ServerConfig]:
    """Read MCP server configurations from files or mappings.

    Args:
        sources: paths of `mcpServers` JSON files, mappings of the same shape,
            or servers already read.

    Returns:
        The servers of all sources, in order, without those marked `disabled`.

    Raises:
        ConfigError: a file is missing or no JSON, the shape is wrong, a
            server is neither `command` nor `url` (or both), a taskloom key has
            a bad value, or two sources name the same server. The message
            names the file and the server.

    """
    servers: list[ServerConfig] = []
    seen: dict[str, str] = {}
    for source in sources:
        if isinstance(source, ServerConfig):
            label, found = source.source, [source]
        else:
            label, document = _read(source)
            found = _servers(label, document)
        for server in found:
            if server.name in seen:
                raise ConfigError(
                    f"{label}: MCP server {quoted(server.name)} is also defined in "
                    f"{seen[server.name]}; give each server its own name"
                )
            seen[server.name] = label
            servers.append(server)
    return servers


def _read(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[str, Any]:
    """The source's label for messages and its parsed JSON.

    Raises:
        ConfigError: for a file that cannot be read or holds no JSON.

    """
    if isinstance(source, Mapping):
        return "<mapping>", source
    if not isinstance(source, str | os.PathLike):
        raise ConfigError(
            f"an MCP configuration is a file's path or a mapping, not {short_repr(source)}"
        )
    path = Path(source)
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"MCP configuration {label} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"MCP configuration {label} is a folder, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read MCP configuration {label}: {clip(str(exc))}") from None
    try:
        return label, json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"MCP configuration {label} is not valid JSON: {exc.msg} "
            f"(line {exc.lineno}, column {exc.colno})"
        ) from None


def _servers(label: str, document: Any) -> list[ServerConfig]:
    """The servers of one parsed configuration.

    Raises:
        ConfigError: for a wrong shape or a bad server entry.

    """
    if not isinstance(document, Mapping) or not isinstance(document.get("mcpServers"), Mapping):
        raise ConfigError(
            f'{label}: an MCP configuration is an object with "mcpServers": '
            '{"NAME": {"command": ...} or {"url": ...}}'
        )
    servers = []
    for name, entry in document["mcpServers"].items():
        if not isinstance(name, str) or not _SERVER_NAME.fullmatch(name):
            raise ConfigError(
                f"{label}: MCP server name {quoted(str(name))} must be 1 to 64 letters, "
                "digits, '_' or '-' (it qualifies tool names as SERVER.TOOL)"
            )
        server = _server(label, name, entry)
        if server is not None:
            servers.append(server)
    return servers


def _server(label: str, name: str, entry: Any) -> ServerConfig | None:
    """One server's configuration, or None when it is `disabled`.

    Raises:
        ConfigError: naming the file, the server and the problem.

    """
    where = f"{label}: MCP server {quoted(name)}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be an object, not {short_repr(entry)}")
    try:
        parsed = _Entry.model_validate(dict(entry))
    except pydantic.ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in problem["loc"]) or "entry"
        raise ConfigError(f"{where}: {clip(key)}: {problem['msg']}") from None
    if parsed.disabled:
        return None
    if (parsed.command is None) == (parsed.url is None):
        raise ConfigError(
            f'{where} needs either "command" (a stdio server) or "url" (a Streamable HTTP '
            "server), not both or neither"
        )
    if parsed.command is not None and not parsed.command.strip():
        raise ConfigError(f'{where}: "command" is empty')
    if parsed.url is not None and not parsed.url.startswith(("http://", "https://")):
        raise ConfigError(
            f'{where}: "url" must start with http:// or https://, got {quoted(parsed.url)}'
        )
    return ServerConfig(
        name=name,
        source=label,
        command=parsed.command,
        args=tuple(parsed.args),
        env=dict(parsed.env),
        cwd=parsed.cwd,
        url=parsed.url,
        headers=dict(parsed.headers),
        max_concurrency=parsed.max_concurrency,
        timeout=parsed.timeout,
        idempotent=parsed.idempotent,
    )
