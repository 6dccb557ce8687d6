"""What the HTTP servers share: a bound socket, uvicorn without its own signal handlers."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator

import anyio
import uvicorn

from taskloom.errors import UserError

__all__ = ["Uvicorn", "bind", "is_loopback", "origin", "serve_shielded", "started"]


class Uvicorn(uvicorn.Server):
    """uvicorn's server without signal handlers of its own: the command line's stop it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_shielded(server: uvicorn.Server, sock: socket.socket) -> None:
    """Serve on `sock` until `server.should_exit`; a cancellation does not tear it down.

    uvicorn is stopped with `should_exit`, which closes the socket, cancels
    what is in flight after the grace period and runs the app's shutdown.
    """
    with anyio.CancelScope(shield=True):
        await server.serve(sockets=[sock])


async def started(server: uvicorn.Server) -> bool:
    """Wait until uvicorn accepts connections (True) or gave up starting (False)."""
    while not server.started:
        if server.should_exit:
            return False
        await anyio.sleep(0.02)  # uvicorn offers no event to wait on
    return True


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port` (0: a free port), not yet listening.

    Raises:
        UserError: if `host` is no address of this machine, or the port is taken.

    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise UserError(f"cannot listen on {host!r}: {_reason(exc)}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {origin(host, port)}: {_reason(exc)}") from exc
    return sock


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or exc)


def origin(host: str, port: int) -> str:
    """`http://host:port`, an IPv6 address in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
