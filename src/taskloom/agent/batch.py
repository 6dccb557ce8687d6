"""Many requests at once: one model, one call cache, one store, a bounded number in flight.

Every request runs on one `Runtime`: a tool's `max_concurrency` and
`rate_limit` hold across the whole batch, not per request, and when slots
are scarce the requests' rounds get them in turn.

Requests overlap: while one waits on its tools, another plans. Identical
lookups across requests run once (the shared `CallCache` joins calls in
flight and remembers results), so a batch with overlapping questions
executes fewer tool calls than its requests ask for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from taskloom._text import SURROGATE, clip, quoted
from taskloom.agent._agent import Agent
from taskloom.agent._result import AgentResult
from taskloom.engine import Runtime
from taskloom.errors import TaskloomError, UserError
from taskloom.store import CallCache

__all__ = ["BatchItem", "BatchRequest", "read_requests", "run_batch"]


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchRequest:
    """One request of a batch."""

    id: str
    """The caller's name for it (its line number when none was given)."""
    question: str
    """What to answer."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchItem:
    """One request's outcome."""

    request: BatchRequest
    """What was asked."""
    result: AgentResult | None
    """The agent's result; None if the request failed before the agent ran."""
    error: str | None = None
    """Why the request failed outright, when it did."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON line `taskloom batch` writes: answer, status, timings, tokens."""
        result = self.result
        if result is None:
            return {
                "id": self.request.id,
                "question": self.request.question,
                "answer": None,
                "status": "failed",
                "error": self.error,
            }
        full = result.to_dict()
        return {
            "id": self.request.id,
            "question": self.request.question,
            "answer": result.answer,
            "status": result.status,
            "error": result.error,
            "timings": full["timings"],
            "usage": full["usage"],
        }


def read_requests(lines: Iterable[str]) -> list[BatchRequest]:
    """Read JSON lines: `{"question": ..., "id": ...}` objects, or bare JSON strings.

    Blank lines are skipped; a request without an id gets its line number as
    its id. An id is a string or a whole number, and no two requests may share
    one (a line number given to a request without an id counts too).

    Raises:
        UserError: naming the line, for a line that is not such a request,
            an id that is malformed or already used, or text holding half a
            surrogate pair.

    """
    requests = []
    lines_by_id: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        request = _request(line, number)
        first = lines_by_id.setdefault(request.id, number)
        if first != number:
            raise UserError(
                f"line {number}: the id {quoted(request.id)} is already used by line {first}; "
                "every request needs its own id (a request without one is named by its line)"
            )
        requests.append(request)
    return requests


def _request(line: str, number: int) -> BatchRequest:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"line {number}: not JSON ({exc.msg})") from None
    except (ValueError, RecursionError):  # an integer too long for Python, or nesting
        raise UserError(f"line {number}: not a JSON value taskloom can read") from None
    if isinstance(data, str):
        data = {"question": data}
    if not isinstance(data, Mapping) or not isinstance(data.get("question"), str):
        raise UserError(f'line {number}: expected {{"question": "..."}} or a JSON string')
    given = data.get("id", number)
    # bool is an int to Python, but `true` is no name for a request.
    if isinstance(given, bool) or not isinstance(given, str | int) or given == "":
        raise UserError(
            f"line {number}: the id must be a non-empty string or a whole number, "
            f"not {clip(json.dumps(given))}"
        )
    for what, text in (("question", data["question"]), ("id", str(given))):
        half = SURROGATE.search(text)
        if half is not None:  # JSON's "\ud800" decodes to one; no output line could hold it
            raise UserError(
                f"line {number}: the {what} holds half of a surrogate pair "
                f"(\\u{ord(half.group()):04x}), which is no character"
            )
    return BatchRequest(id=str(given), question=data["question"])


async def run_batch(
    agent: Agent,
    requests: Iterable[BatchRequest | str],
    *,
    concurrency: int = 4,
    on_result: Callable[[BatchItem], None] | None = None,
    runtime: Runtime | None = None,
) -> list[BatchItem]:
    """Answer many requests with one agent, `concurrency` of them at a time.

    Give the agent a `CallCache` (and a `Store`) to share lookups between
    requests; with none, the batch makes one (keeping failures for the whole
    batch) so they are shared anyway.

    Args:
        agent: answers every request; its model, cache and store are shared.
        requests: the requests, or plain questions.
        concurrency: requests in flight at once.
        on_result: called with each item as soon as it is done (in finish order).
        runtime: the runtime the requests share (their tools' limits, a
            global limit, fair turns); by default the agent's, else a new one
            holding the agent's model, cache and store. The agent is put on it.

    Returns:
        One item per request, in request order. A request that fails is an
        item with its error; it does not stop the others.

    Raises:
        UserError: if concurrency is below 1, or two requests share an id (a
            plain question's id is its position, from 1).

    """
    if concurrency < 1:
        raise UserError(f"concurrency must be at least 1, got {concurrency}")
    if agent.cache is None:
        # Within one batch a failed lookup stays failed: asking again is waste.
        agent.cache = CallCache(agent.store, failure_ttl=None)
    agent.read_ahead = False  # requests take turns on the model: no idle time to fill
    if runtime is None:
        runtime = agent.runtime or Runtime(
            tools=agent.tools, cache=agent.cache, store=agent.store, model=agent.model
        )
    agent.runtime = runtime  # its limits hold across the batch, not per request
    todo = [
        r if isinstance(r, BatchRequest) else BatchRequest(id=str(i), question=r)
        for i, r in enumerate(requests, start=1)
    ]
    _check_unique_ids(todo)
    items: list[BatchItem | None] = [None] * len(todo)
    limiter = anyio.CapacityLimiter(concurrency)

    async def answer(index: int, request: BatchRequest) -> None:
        async with limiter:
            try:
                item = BatchItem(request=request, result=await agent.run(request.question))
            except TaskloomError as exc:  # a bad request fails alone
                item = BatchItem(request=request, result=None, error=str(exc))
        items[index] = item
        if on_result is not None:
            on_result(item)

    async with anyio.create_task_group() as tg:
        for index, request in enumerate(todo):
            tg.start_soon(answer, index, request)
    done = [i for i in items if i is not None]
    assert len(done) == len(todo)
    return done


def _check_unique_ids(requests: Iterable[BatchRequest]) -> None:
    seen: set[str] = set()
    for request in requests:
        if request.id in seen:
            raise UserError(f"two requests of the batch have the id {quoted(request.id)}")
        seen.add(request.id)
