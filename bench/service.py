"""The HTTP API under load: 50 concurrent runs, each followed live over SSE, some clients resuming.

A real `taskloom serve` process on loopback runs 50 plans at once (each a
fan-out of short naps joined by a chain). Every run has one SSE client; a
third of the clients drop their connection after a random number of
events and reconnect with `Last-Event-ID`, again and again until the run
ends. For each run the client's sequence numbers are compared with the
run's full log (a replay after it ended):

- delivered: events received, counted once;
- lost: events of the log the client never received (must be 0);
- duplicated: events received more than once (must be 0);
- latency: from the engine's timestamp of an event (its `at`, unix
  seconds) to the moment the client read it, for events that happened while
  a connection was following its stream (a replayed event's age is how long
  the client was away, not a delivery delay).

    .venv/bin/python bench/service.py              # 50 runs, writes docs/benchmarks.md
    .venv/bin/python bench/service.py --runs 10    # quick run, no file
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).parent))

from report import write_section  # noqa: E402

TOOLS = '''
import anyio
import taskloom


@taskloom.tool
async def nap(seconds: float) -> float:
    """Sleeps, then returns the seconds."""
    await anyio.sleep(seconds)
    return seconds


@taskloom.tool
def total(a: float, b: float = 0.0, c: float = 0.0) -> float:
    """The sum."""
    return a + b + c
'''

TOKEN = "bench-token"


def plan_text(width: int, rng: random.Random) -> str:
    """A fan-out of `width` naps (0.1-1 s), summed in pairs down a chain."""
    lines = [f"{i}. nap({rng.uniform(0.1, 1.0):.3f})" for i in range(1, width + 1)]
    previous = None
    for i in range(1, width + 1, 2):
        n = len(lines) + 1
        refs = [f"${i}", f"${i + 1}"] if i + 1 <= width else [f"${i}"]
        if previous is not None:
            refs.append(f"${previous}")
        lines.append(f"{n}. total({', '.join(refs)})")
        previous = n
    return "\n".join(lines)


@dataclass
class Client:
    """What one run's SSE client saw."""

    run_id: str
    drops: bool
    received: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    reconnects: int = 0
    status: str | None = None


async def follow(http: httpx.AsyncClient, client: Client, rng: random.Random) -> None:
    """Read the run's stream to its end, dropping and resuming if the client drops.

    A connection that breaks (a kept-alive one the server closed as it was
    reused) is resumed like a dropped one, as any SSE client does.
    """
    last: int | None = None
    while client.status is None:
        headers = {"Last-Event-ID": str(last)} if last is not None else {}
        budget = rng.randint(3, 40) if client.drops else None
        try:
            last = await _read(http, client, headers, budget, last)
        except httpx.TransportError:
            pass
        if client.status is None:
            client.reconnects += 1


async def _read(
    http: httpx.AsyncClient,
    client: Client,
    headers: dict[str, str],
    budget: int | None,
    last: int | None,
) -> int | None:
    read = 0
    async with http.stream("GET", f"/v1/runs/{client.run_id}/events", headers=headers) as s:
        caught_up: float | None = None  # once the first message is read: the replay is over
        fields: dict[str, str] = {}
        async for line in s.aiter_lines():
            if line:
                if not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                continue
            if "data" not in fields:
                continue
            now = time.time()
            data = json.loads(fields["data"])
            if fields.get("event") == "end":
                client.status = data["status"]
                break
            seq = int(fields["id"])
            client.received.append(seq)
            last = seq
            if caught_up is None:
                caught_up = now
            elif data["at"] >= caught_up:  # happened while this connection was following
                client.latencies.append(now - data["at"])
            fields = {}
            read += 1
            if budget is not None and read >= budget:
                break
    return last


async def one_run(
    http: httpx.AsyncClient, plan: str, drops: bool, rng: random.Random, clients: list[Client]
) -> None:
    # A fresh connection: a POST is not retried on a kept-alive one that breaks.
    response = await http.post("/v1/runs", json={"plan": plan}, headers={"Connection": "close"})
    response.raise_for_status()
    client = Client(response.json()["id"], drops)
    clients.append(client)
    await follow(http, client, rng)


async def full_log(http: httpx.AsyncClient, run_id: str) -> list[int]:
    text = (await http.get(f"/v1/runs/{run_id}/events")).text
    return [int(m) for m in re.findall(r"^id: (\d+)$", text, re.M)]


async def measure(
    url: str, runs: int, width: int, seed: int
) -> tuple[list[Client], dict[str, list[int]], float]:
    rng = random.Random(seed)
    clients: list[Client] = []
    limits = httpx.Limits(max_connections=runs * 2 + 10)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as http:
        began = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for n in range(runs):
                plan = plan_text(width, rng)
                tg.start_soon(one_run, http, plan, n % 3 == 0, random.Random(seed + n), clients)
        elapsed = time.perf_counter() - began
        logs = {c.run_id: await full_log(http, c.run_id) for c in clients}
    return clients, logs, elapsed


def start_server(folder: Path, runs: int) -> tuple[subprocess.Popen[bytes], str]:
    tools = folder / "bench_tools.py"
    tools.write_text(TOOLS)
    log = folder / "serve.log"
    args = [
        sys.executable,
        *("-m", "taskloom", "serve", "--port", "0", "--token", TOKEN),
        *("--store", str(folder / "runs.sqlite3"), "--tools", str(tools)),
        *("--max-runs", str(runs + 10), "--no-world"),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"at (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"taskloom serve did not start:\n{log.read_text()}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--width", type=int, default=30, help="naps per run's fan-out")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args()
    write = args.write if args.write is not None else args.runs == 50
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(Path(tmp), args.runs)
        try:
            clients, logs, elapsed = anyio.run(measure, url, args.runs, args.width, args.seed)
        except BaseException:
            print((Path(tmp) / "serve.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            process.terminate()
            process.wait(timeout=30)
    groups = {
        "steady clients": [c for c in clients if not c.drops],
        "clients that drop and resume": [c for c in clients if c.drops],
    }
    rows = []
    for name, group in groups.items():
        delivered = sum(len(set(c.received)) for c in group)
        lost = sum(len(set(logs[c.run_id]) - set(c.received)) for c in group)
        duplicated = sum(len(c.received) - len(set(c.received)) for c in group)
        latencies = [x * 1000 for c in group for x in c.latencies]
        statuses = {c.status for c in group}
        rows.append(
            [
                name,
                str(len(group)),
                str(sum(c.reconnects for c in group)),
                f"{delivered:,}",
                str(lost),
                str(duplicated),
                f"{percentile(latencies, 0.5):.1f}" if latencies else "—",
                f"{percentile(latencies, 0.99):.1f}" if latencies else "—",
                "/".join(sorted(str(s) for s in statuses)),
            ]
        )
    header = [
        "clients",
        "runs",
        "reconnects",
        "events delivered",
        "lost",
        "duplicated",
        "p50 latency (ms)",
        "p99 latency (ms)",
        "runs ended",
    ]
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(row))
    events = sum(len(v) for v in logs.values())
    print(f"{args.runs} runs, {events:,} events in {elapsed:.2f} s")
    load = f"{os.getloadavg()[0]:.1f}"
    if write:
        write_section(
            "service",
            title=f"HTTP API under load: {args.runs} concurrent runs, each followed over SSE",
            command="python bench/service.py",
            header=header,
            rows=rows,
            notes=[
                f"One `taskloom serve` process; {args.runs} plans started at once, each "
                f"{args.width} naps of 0.1-1 s summed down a chain; {events:,} events in all, "
                f"every run over in {elapsed:.2f} s.",
                "A third of the clients drop their stream after 3-40 events and resume "
                "with `Last-Event-ID` until the run ends; lost and duplicated compare each "
                "client's sequence numbers with the run's whole log, replayed after it ended.",
                "Latency: from the event's engine timestamp (`at`) to the client reading it, "
                "for the events that happened while a connection was following its stream "
                "(after its first message: a replayed event is as old as the client's "
                "absence, and the first message waits for the connection's set-up). Client "
                f"and server share the machine's 2 cores; load average {load}. A dropping "
                "client (—) rarely reads past the replay before it drops again.",
            ],
        )


if __name__ == "__main__":
    main()
