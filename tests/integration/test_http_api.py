"""`taskloom serve`: the HTTP API in a real process on loopback, driven over real HTTP."""

from __future__ import annotations

import collections
import os
import random
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_api_server import TOOLS, Server, open_gate, serving, start

from chat_server import chat_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FINISH = "Thought: the results answer it.\nAction: Finish($1)"


@pytest.fixture(scope="module")
def tools_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tools") / "api_tools.py"
    path.write_text(TOOLS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tools_file: Path) -> Iterator[Server]:
    """One server for the tests that only read and write runs (plans: no model needed)."""
    folder = tmp_path_factory.mktemp("serve")
    with serving(
        folder / "runs.sqlite3", tools_file, folder / "serve.log", "--max-runs", "3"
    ) as running:
        yield running


def seqs(events: list) -> list[int]:  # type: ignore[type-arg]
    return [int(e.id) for e in events if e.id is not None]


# -- runs, their views and their events ------------------------------------------------


def test_a_plan_runs_and_reads_back_through_every_view(server: Server) -> None:
    run_id = server.start_plan('1. shout("a")\n2. shout("$1b")\n3. math("2 + 3")\n4. odd()')
    events = server.events(run_id)
    assert events[-1].event == "end" and events[-1].data == {"status": "completed"}
    numbered = events[:-1]
    assert seqs(numbered) == list(range(1, len(numbered) + 1))
    assert numbered[-1].event == "run_finished" and numbered[-1].data["status"] == "completed"
    added = [e.data for e in numbered if e.event == "task_added"]
    assert [(a["task_id"], a["tool"], a["deps"]) for a in added] == [
        ("1", "shout", []),
        ("2", "shout", ["1"]),
        ("3", "math", []),
        ("4", "odd", []),
    ]
    assert all(e.data["seq"] == int(e.id) and e.data["kind"] == e.event for e in numbered)
    assert all(isinstance(e.data["at"], float) and e.data["at"] > 1e9 for e in numbered)

    shown = server.client.get(f"/v1/runs/{run_id}").json()
    assert shown["id"] == run_id and shown["kind"] == "plan" and shown["status"] == "completed"
    assert shown["plan"].splitlines()[0] == '1. shout("a")'
    tasks = {t["id"]: t for t in shown["tasks"]}
    assert {i: t["output"] for i, t in tasks.items()} == {"1": "A", "2": "AB", "3": 5, "4": "NaN"}
    assert tasks["2"]["deps"] == ["1"] and tasks["2"]["attempts"] == 1
    assert tasks["1"]["args"] == '"a"' and tasks["1"]["tool"] == "shout"
    assert shown["started_at"] <= tasks["1"]["started_at"] <= tasks["1"]["finished_at"]

    # The same stream again, once the run is over: the store's log, the same messages.
    assert [(e.id, e.event) for e in server.events(run_id)] == [(e.id, e.event) for e in events]
    # From a later event on.
    tail = server.events(run_id, last_id=3)
    assert seqs(tail) == list(range(4, len(numbered) + 1))


def test_runs_are_listed_newest_first_a_page_at_a_time(server: Server) -> None:
    made = [server.start_plan(f'1. shout("{n}")') for n in range(3)]
    for run_id in made:
        server.events(run_id)  # until each is over
    first = server.client.get("/v1/runs", params={"limit": 2}).json()
    assert [r["id"] for r in first["runs"]] == made[::-1][:2]
    assert first["runs"][0]["kind"] == "plan" and first["runs"][0]["status"] == "completed"
    assert first["runs"][0]["finished_at"] >= first["runs"][0]["started_at"]
    second = server.client.get("/v1/runs", params={"limit": 2, "before": first["next"]}).json()
    assert second["runs"][0]["id"] == made[0]
    every = server.client.get("/v1/runs", params={"limit": 1000}).json()
    assert every["next"] is None


def test_a_dropped_stream_resumes_with_nothing_lost_and_nothing_twice(server: Server) -> None:
    lines = [f"{n}. nap(0.02)" for n in range(1, 121)]  # about 0.6 s: drops while it runs
    lines += [f'{n}. shout("x${n - 120}")' for n in range(121, 161)]
    run_id = server.start_plan("\n".join(lines), max_concurrency=4)
    rng = random.Random(13)
    received: list[int] = []
    ended = None
    for _ in range(500):
        last = received[-1] if received else None
        batch = server.events(run_id, last_id=last, limit=rng.randint(1, 40))
        received += seqs(batch)
        if batch and batch[-1].event == "end":
            ended = batch[-1].data
            break
    assert ended == {"status": "completed"}
    assert received == list(range(1, len(received) + 1))
    total = server.client.get(f"/v1/runs/{run_id}/events", params={"after": 0})
    assert total.text.count("\nevent: ") + total.text.startswith("event: ") == len(received) + 1


def test_a_run_is_cancelled(server: Server) -> None:
    run_id = server.start_plan('1. shout("x")\n2. nap(600)\n3. shout("$2")')
    events = server.events(run_id, limit=8)
    assert "task_started" in [e.event for e in events]
    cancelled = server.client.post(f"/v1/runs/{run_id}/cancel")
    assert cancelled.status_code == 202
    assert cancelled.json() == {"id": run_id, "status": "cancelled"}
    rest = server.events(run_id)
    assert rest[-1].data == {"status": "cancelled"}
    tasks = {t["id"]: t["status"] for t in server.client.get(f"/v1/runs/{run_id}").json()["tasks"]}
    assert tasks == {"1": "done", "2": "cancelled", "3": "cancelled"}
    again = server.client.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]


def test_past_the_limit_of_runs_a_request_gets_429(server: Server) -> None:
    going = [server.start_plan("1. nap(600)") for _ in range(3)]
    refused = server.client.post("/v1/runs", json={"plan": '1. shout("one more")'})
    assert refused.status_code == 429 and refused.headers["retry-after"]
    assert "3 runs" in refused.json()["detail"]
    for run_id in going:
        assert server.client.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"
    server.events(server.start_plan('1. shout("room again")'))


# -- bad input: a clear 4xx, never a 5xx ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({}, 422, "either"),
        ({"question": "q", "plan": '1. shout("a")'}, 422, "either"),
        ({"question": "   "}, 422, "empty"),
        ({"plan": ""}, 422, "at least 1"),
        ({"plan": '1. shout("a")', "max_concurrency": 0}, 422, "greater than or equal"),
        ({"plan": '1. shout("a")', "colour": "red"}, 422, "Extra inputs"),
        ({"plan": '1. shout("a")', "budget": {"cost": 1}}, 422, "prices"),
        ({"plan": '1. shout("a"'}, 422, "the plan is not valid"),
        ({"plan": '1. whisper("a")'}, 422, "whisper"),
        ({"plan": 7}, 422, "string"),
        ([1, 2], 422, "object"),
    ],
)
def test_a_bad_body_is_a_clear_4xx(server: Server, body: object, status: int, says: str) -> None:
    response = server.client.post("/v1/runs", json=body)
    assert response.status_code == status, response.text
    assert says in response.text


def test_bad_requests_of_every_kind_are_4xx(server: Server) -> None:
    client = server.client
    broken = client.post(
        "/v1/runs", content=b'{"plan": ', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    for path in ("/v1/runs/nosuchrun", "/v1/runs/nosuchrun/events"):
        missing = client.get(path)
        assert missing.status_code == 404 and "nosuchrun" in missing.json()["detail"]
    for action in ("cancel", "resume"):
        assert client.post(f"/v1/runs/nosuchrun/{action}").status_code == 404
    assert client.get("/v1/runs", params={"before": "nosuchrun"}).status_code == 404
    assert client.get("/v1/runs", params={"limit": 0}).status_code == 422
    run_id = server.start_plan('1. shout("a")')
    for bad in ("x", "-1", "9" * 25, "1.5"):
        bad_resume = client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": bad})
        assert bad_resume.status_code == 422, bad
    assert client.get(f"/v1/runs/{run_id}/events", params={"after": -1}).status_code == 422
    server.events(run_id)
    ended = client.post(f"/v1/runs/{run_id}/resume")
    assert ended.status_code == 409 and "ended" in ended.json()["detail"]
    huge = '1. shout("' + "x" * (17 * 1024 * 1024) + '")'
    assert client.post("/v1/runs", json={"plan": huge}).status_code == 413

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it is read
        yield b'{"plan": "1. shout(\\"'
        for _ in range(17):
            yield b"x" * 1024 * 1024
        yield b'\\")"}'

    streamed = client.post(
        "/v1/runs", content=chunked(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413 and "larger than" in streamed.json()["detail"]


# -- the token -----------------------------------------------------------------------------


def test_every_api_call_needs_the_token_but_the_page_does_not(server: Server) -> None:
    bare = httpx.Client(base_url=server.url, timeout=30)
    with bare:
        for method, path in [("GET", "/v1/runs"), ("POST", "/v1/runs"), ("GET", "/v1/runs/x")]:
            refused = bare.request(method, path)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            wrong = bare.request(method, path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
        # A bad body without the token is still 401: nothing is read before the token.
        assert (
            bare.post("/v1/runs", content=b"{", headers={"content-length": "1"}).status_code == 401
        )
        run_id = server.start_plan('1. shout("a")')
        stream = bare.get(f"/v1/runs/{run_id}/events", params={"token": server.token})
        assert stream.status_code == 200 and "event: end" in stream.text
        assert bare.get("/v1/runs", params={"token": server.token}).status_code == 401
        page = bare.get("/")
        assert page.status_code == 200 and "<html" in page.text
        assert bare.get("/static/index.html").status_code == 200
        assert bare.get("/static/nothing.js").status_code == 404
        assert bare.get("/openapi.json").json()["paths"]["/v1/runs"]


def test_the_token_is_made_once_kept_private_and_printed_once(
    tools_file: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    store = tmp_path / "runs.sqlite3"
    first = start(store, tools_file, tmp_path / "first.log", token=None, env=env)
    first.stop()
    kept = tmp_path / "config" / "taskloom" / "token"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    token = kept.read_text().strip()
    assert token in first.log.read_text() and len(token) >= 40
    second = start(store, tools_file, tmp_path / "second.log", token=None, env=env)
    try:
        assert token not in second.log.read_text()
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{second.url}/v1/runs", headers=headers).status_code == 200
        assert httpx.get(f"{second.url}/v1/runs").status_code == 401
    finally:
        second.stop()


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--no-auth", "--host", "0.0.0.0"], "loopback"),
        (["--no-auth", "--token", "t"], "contradict"),
        (["--token", "two words"], "no spaces"),
        (["--token", " "], "empty"),
        (["--host", "no.such.host.invalid"], "cannot listen"),
    ],
)
def test_bad_serve_options_are_clear_errors(flags: list[str], says: str) -> None:
    args = [sys.executable, "-m", "taskloom", "serve", "--port", "0", *flags]
    refused = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and says in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_port_in_use_is_a_clear_error(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    args = [sys.executable, "-m", "taskloom", "serve", "--port", port, "--token", "t"]
    refused = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "in use" in refused.stderr, refused.stderr


def test_no_auth_on_loopback(tools_file: Path, tmp_path: Path) -> None:
    with serving(tmp_path / "s.sqlite3", tools_file, tmp_path / "s.log", "--no-auth") as open_:
        assert httpx.get(f"{open_.url}/v1/runs").status_code == 200


# -- questions, and a server that is killed ------------------------------------------------


def test_a_question_is_answered_with_the_agents_events(tools_file: Path, tmp_path: Path) -> None:
    replies = ['1. shout("paris")\n2. join()<END_OF_PLAN>', FINISH]
    with (
        chat_server(replies) as model,
        serving(
            tmp_path / "runs.sqlite3",
            tools_file,
            tmp_path / "serve.log",
            *("--base-url", model.url, "--model", "scripted", "--no-world"),
        ) as server,
    ):
        created = server.client.post("/v1/runs", json={"question": "What is PARIS?"})
        assert created.status_code == 201
        run_id = created.json()["id"]
        events = server.events(run_id)
        shown = server.client.get(f"/v1/runs/{run_id}").json()
    kinds = [e.event for e in events]
    assert kinds[-1] == "end" and events[-1].data == {"status": "answered"}
    assert {"llm_call_finished", "plan_attempt", "decided", "run_finished"} <= set(kinds)
    assert seqs(events) == list(range(1, len(events)))
    assert shown["kind"] == "agent" and shown["answer"] == "PARIS"
    assert shown["request"] == "What is PARIS?" and 'shout("paris")' in shown["plan"]


def test_a_killed_server_restarted_on_its_store_resumes_the_run(
    tools_file: Path, tmp_path: Path
) -> None:
    store, gate = tmp_path / "runs.sqlite3", tmp_path / "gate"
    first = start(store, tools_file, tmp_path / "first.log")
    try:
        plan = f'1. shout("a")\n2. gate({str(gate)!r})\n3. shout("$2")'.replace("'", '"')
        run_id = first.start_plan(plan)
        seen: list[str] = []
        for event in first.follow(run_id):
            seen.append(f"{event.event}:{event.data.get('task_id')}")
            if "task_started:2" in seen and "task_finished:1" in seen:
                break
        first.kill()
    finally:
        first.stop()
    second = start(store, tools_file, tmp_path / "second.log")
    try:
        before = second.client.get(f"/v1/runs/{run_id}").json()
        assert before["status"] == "abandoned"
        resumed = second.client.post(f"/v1/runs/{run_id}/resume")
        assert resumed.status_code == 202 and resumed.json() == {"id": run_id, "status": "running"}
        assert second.client.post(f"/v1/runs/{run_id}/resume").status_code == 409
        assert second.client.get(f"/v1/runs/{run_id}").json()["status"] == "running"
        open_gate(gate, "opened")
        events = second.events(run_id)
        assert events[-1].data == {"status": "completed"}
        assert seqs(events) == list(range(1, len(events)))  # one numbering across both servers
        after = second.client.get(f"/v1/runs/{run_id}").json()
        outputs = {t["id"]: t["output"] for t in after["tasks"]}
        assert outputs == {"1": "A", "2": "opened", "3": "OPENED"}
    finally:
        second.stop()


def test_ctrl_c_stops_the_server_and_records_its_runs_cancelled(
    tools_file: Path, tmp_path: Path
) -> None:
    server = start(tmp_path / "runs.sqlite3", tools_file, tmp_path / "serve.log")
    run_id = server.start_plan("1. nap(600)")
    server.stop()
    assert server.process.returncode in (0, 130), server.log.read_text()
    assert "Traceback" not in server.log.read_text()
    import sqlite3

    with sqlite3.connect(tmp_path / "runs.sqlite3") as conn:
        (status,) = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    assert status == "cancelled"
    assert re.search(r"token|serving", server.log.read_text())


# -- a property-based fuzzer over the OpenAPI document ---------------------------------------


@pytest.fixture(scope="module")
def fuzzed_schema(tmp_path_factory: pytest.TempPathFactory, tools_file: Path) -> Iterator[Any]:
    """The server's own OpenAPI document, served by a server whose model always refuses."""
    schemathesis = pytest.importorskip("schemathesis")
    folder = tmp_path_factory.mktemp("fuzz")
    with (
        chat_server([]) as model,  # no replies: every question fails at its first model call
        serving(
            folder / "runs.sqlite3",
            tools_file,
            folder / "serve.log",
            *("--base-url", model.url, "--model", "none", "--max-runs", "4"),
        ) as running,
    ):
        schema = schemathesis.openapi.from_url(f"{running.url}/openapi.json")
        schema.config.update(headers={"Authorization": f"Bearer {running.token}"})
        yield schema
        assert "Traceback" not in running.log.read_text()


def test_no_generated_request_gets_a_5xx(fuzzed_schema: Any) -> None:
    from hypothesis import HealthCheck, given, settings

    operations = [result.ok() for result in fuzzed_schema.get_all_operations()]
    assert len(operations) == 6
    seen: collections.Counter[int] = collections.Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def no_5xx(case: Any) -> None:
            response = case.call(timeout=30)
            seen[response.status_code] += 1
            assert response.status_code < 500, (case.method, case.path, response.text)

        no_5xx()
    # The token went with the requests: most reached the routes.
    assert seen[401] < sum(seen.values()) / 2, seen
