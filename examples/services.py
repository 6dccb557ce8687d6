"""Tools over a few pretend services, for the map and condition examples.

taskloom exec examples/check_all.plan --tools examples/services.py --no-world
taskloom exec examples/troubleshoot.plan --tools examples/services.py --no-world
"""

from __future__ import annotations

import taskloom

_STATUS = {"api": "ok", "db": "down", "queue": "ok", "search": "ok"}


@taskloom.tool(idempotent=True)
def services() -> list[str]:
    """The names of the services that are running."""
    return sorted(_STATUS)


@taskloom.tool(idempotent=True)
def check(service: str, after: str | None = None) -> dict[str, str]:
    """A service's health: its name and status ("ok" or "down"); `after` orders it after a step."""
    if service not in _STATUS:
        raise LookupError(f"no service named {service!r}")
    return {"service": service, "status": _STATUS[service]}


@taskloom.tool
def restart(service: str) -> str:
    """Restart a service (a side effect); says what was done."""
    _STATUS[service] = "ok"
    return f"restarted {service}"


@taskloom.tool
def page(team: str, about: str) -> str:
    """Page a team (a side effect)."""
    return f"paged {team}: {about}"


@taskloom.tool(idempotent=True)
def summary(checks: list[dict[str, str]]) -> dict[str, object]:
    """How many services are ok, and the names of those that are not."""
    down = [c["service"] for c in checks if c["status"] != "ok"]
    return {"ok": len(checks) - len(down), "down": down}


@taskloom.tool(idempotent=True)
def report(before: str, after: str | None) -> str:
    """One line on a service's status before and after the fix (None: no fix was needed)."""
    return f"was {before}" + ("" if after is None else f", now {after}")
