"""Records one run into the store, from its events, without slowing it down.

Each event becomes a few queued statements (a tuple on a queue); the writer
thread encodes JSON and commits. The only time a run waits for the disk is
`before_call`, for tools that are not idempotent.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from taskloom._ids import RunId
from taskloom.engine import events as ev
from taskloom.errors import ExecutorLost, StoreError, TaskCancelled, TaskInterrupted
from taskloom.store._codec import task_to_json
from taskloom.store._records import EventRecord
from taskloom.store._writer import Json, Writer

if TYPE_CHECKING:
    from taskloom.engine import Run, RunResult
    from taskloom.store._store import Store

__all__ = ["RunJournal"]

# Ranks order a batch, following a task's life: a row is inserted, then
# rewritten (a live edit, before it starts), then marked started, then settled;
# statements of one rank never touch a row twice in conflicting ways (rewrites
# of one row keep their order), so grouping them for executemany keeps the
# final state.
_NEW, _EDITING, _STARTING, _SETTLING, _LOG = 0, 1, 2, 3, 4

_ADD_TASK = (
    "INSERT INTO tasks (run_id, task_id, position, round, tool, definition, status)"
    " VALUES (?, ?, ?, ?, ?, ?, 'pending')"
    " ON CONFLICT (run_id, task_id) DO UPDATE SET status = 'pending', tool = excluded.tool,"
    " definition = excluded.definition"
)
_REWRITTEN = "UPDATE tasks SET tool = ?, definition = ? WHERE run_id = ? AND task_id = ?"
_STARTED = (
    "UPDATE tasks SET status = 'running', arguments = ?, started = ?"
    " WHERE run_id = ? AND task_id = ?"
)
_FINISHED = (
    "UPDATE tasks SET status = 'done', output = ?, finished = ? WHERE run_id = ? AND task_id = ?"
)
_SETTLED = (
    "UPDATE tasks SET status = ?, error_type = ?, error = ?, finished = ?"
    " WHERE run_id = ? AND task_id = ?"
)
_UNSETTLED = (
    "UPDATE tasks SET status = 'cancelled', error_type = ?, error = ?, finished = ?"
    " WHERE run_id = ? AND status IN ('pending', 'running')"
)
_STARTED_AT = "UPDATE runs SET started = ? WHERE id = ?"
_EVENT = "INSERT INTO events (run_id, seq, kind, task_id, at, data) VALUES (?, ?, ?, ?, ?, ?)"
_PLAN_ATTEMPT = (
    "INSERT INTO plan_attempts (run_id, attempt, round, text, valid, error)"
    " VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (run_id, attempt) DO UPDATE SET text = excluded.text,"
    " valid = excluded.valid, error = excluded.error"
)
_LLM_CALL = (
    "INSERT OR REPLACE INTO llm_calls (run_id, n, purpose, model, prompt_hash, prompt_tokens,"
    " completion_tokens, latency_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_END = (
    "UPDATE runs SET status = ?, finished = ?, answer = coalesce(?, answer),"
    " exhausted = ? WHERE id = ?"
)


class RunJournal:
    """Keeps one run (an exec run, or every round of an agent run) in a store.

    Made by `Store.journal()` or `Store.resume_journal()`; pass it to
    `execute(journal=...)`, `open_run(journal=...)` or an Agent.
    """

    def __init__(
        self,
        store: Store,
        run_id: RunId,
        *,
        kind: str,
        positions: int = 0,
        elapsed: float = 0.0,
        llm_calls: int = 0,
    ) -> None:
        """Record into `store` under `run_id`; use the Store's methods to make one."""
        self.store = store
        self.run_id = run_id
        """The run being recorded."""
        self.kind = kind
        self.round = 0
        """The planning round that tasks added now belong to."""
        self._writer: Writer = store.writer
        self._positions = positions
        self._offset = elapsed
        self._llm_calls = llm_calls
        self._t0 = time.monotonic()
        self._timed = False
        """Whether `_t0` is the first run's start (every later round is timed from it too)."""
        self._runs: list[Run] = []
        self._writer.on_failure(self._stop_runs)

    # -- the engine's Journal protocol ----------------------------------------

    def attach(self, run: Run) -> None:
        """Record `run`'s events from now on."""
        if not self._timed:
            self._t0 = run.started_at - self._offset
            self._timed = True
            if not self._offset:
                # A new run: its start is the moment event times count from, so
                # `started + at` is each event's wall-clock time (the HTTP stream's).
                wall = time.time() - (time.monotonic() - self._t0)
                self._writer.put(_NEW, _STARTED_AT, (wall, self.run_id))
        self._runs.append(run)
        run.subscribe(self.on_event)

    async def before_call(self, task_id: str) -> None:
        """Return once every event so far, this task's start included, is committed.

        Raises:
            StoreError: if the store failed; the task must not be called.

        """
        await self._writer.sync()

    async def close(self, result: RunResult) -> None:
        """Commit the run's end (for exec runs) and everything queued.

        Raises:
            StoreError: if any write of the run failed.

        """
        lost = self._executor_lost()
        for run in self._runs:
            if run.crash is not None and not lost:
                self._settle_after_crash(run.crash)
        self._runs = [r for r in self._runs if not r.finished]  # done: let it go
        if self.kind == "exec" and not lost:  # lost: left unfinished, as a crash leaves it
            self.end(str(result.status), exhausted=result.exhausted)
        await self.flush()

    def _executor_lost(self) -> bool:
        """Whether a run stopped because its executor (a Ray cluster) went away.

        Such a run is kept as a crash keeps it: the tasks it was running stay
        `running` and the rest unstarted, so `resume` finishes it (calling an
        idempotent tool again, marking any other `interrupted`).
        """
        return self.kind == "exec" and any(isinstance(r.crash, ExecutorLost) for r in self._runs)

    def _settle_after_crash(self, crash: BaseException) -> None:
        """Record every task the store still has unsettled as cancelled by the crash.

        A crash (a listener that raised, say) can stop a task's end from ever
        becoming an event, so the store would keep it `running` in a run
        recorded as over. Ranked last, this runs after every queued settlement.
        """
        error = TaskCancelled("", f"the run crashed: {type(crash).__name__}")
        at = time.monotonic() - self._t0
        self._writer.put(_LOG, _UNSETTLED, ("TaskCancelled", str(error), at, self.run_id))

    # -- how the run ended ---------------------------------------------------

    def end(self, status: str, *, answer: str | None = None, exhausted: str | None = None) -> None:
        """Record how the run ended."""
        self._writer.put(_LOG, _END, (status, time.time(), answer, exhausted, self.run_id))

    async def flush(self) -> None:
        """Wait until everything queued is committed.

        Raises:
            StoreError: if a write failed.

        """
        await self._writer.sync()
        if self._writer.failure is not None:
            raise self._writer.failure

    # -- events ---------------------------------------------------------------

    def on_event(self, event: ev.Event) -> None:
        """Record one event of the run.

        `attach()` subscribes this to each run; an agent sends it the events
        of its request that happen between rounds (the joiner's call and
        decision), so the journal learns everything from events.
        """
        put, run_id = self._writer.put, self.run_id
        at = event.at - self._t0
        task_id = getattr(event, "task_id", None)
        data: dict[str, Any] | None = None
        match event:
            case ev.TaskAdded():
                self._positions += 1
                definition = Json(task_to_json(event.task))
                added = (run_id, task_id, self._positions, self.round, event.tool, definition)
                put(_NEW, _ADD_TASK, added)
            case ev.TaskRewritten():
                rewritten = task_to_json(event.task)
                put(_EDITING, _REWRITTEN, (event.tool, Json(rewritten), run_id, task_id))
                data = {"tool": event.tool, "definition": rewritten}
            case ev.TaskStarted():
                put(_STARTING, _STARTED, (Json(event.arguments), at, run_id, task_id))
            case ev.TaskFinished():
                put(_SETTLING, _FINISHED, (Json(event.output), at, run_id, task_id))
            case ev.TaskCancelledEvent() if self._executor_lost():
                data = {"error": str(event.error)}  # logged, not settled: resume runs it
            case ev.TaskFailed() | ev.TaskSkipped() | ev.TaskCancelledEvent():
                data = self._settled(event, at)
            case ev.TaskRestored():
                data = {"status": event.status}
                if event.status == "interrupted":  # the one restored state that is new
                    assert event.error is not None
                    how = (event.status, type(event.error).__name__, str(event.error))
                    put(_SETTLING, _SETTLED, (*how, at, run_id, task_id))
            case ev.TaskMapped():  # its elements come as task_added events of their own
                data = {"elements": len(event.elements)}
            case ev.TaskRetried():
                data = {"attempt": event.attempt, "delay": event.delay, "error": str(event.error)}
            case ev.RunFinished():
                data = {"status": event.status}
            case ev.AgentEvent():
                data = self._agent_event(event)
        log = (run_id, event.seq, event.kind, task_id, at, None if data is None else Json(data))
        put(_LOG, _EVENT, log)
        watchers = self.store.watchers
        if watchers:  # an HTTP server streaming runs (`Store.subscribe`)
            record = EventRecord(seq=event.seq, kind=event.kind, task_id=task_id, at=at, data=data)
            for watcher in watchers:
                watcher(run_id, record, event)

    def _settled(
        self, event: ev.TaskFailed | ev.TaskSkipped | ev.TaskCancelledEvent, at: float
    ) -> dict[str, Any]:
        """Queue the row of a task that ended without a result; return the event's data to log."""
        data = {"error": str(event.error)}
        status = _SETTLED_AS[type(event)]
        if type(event.error) is TaskInterrupted:  # an executor's worker died in it
            status = "interrupted"
        how = (status, type(event.error).__name__, data["error"])
        self._writer.put(_SETTLING, _SETTLED, (*how, at, self.run_id, event.task_id))
        return data

    def _agent_event(self, event: ev.AgentEvent) -> dict[str, Any]:
        """Queue the rows an agent's event fills; return the event's own data to log.

        The plan's text and the prompt's hash go to their tables (`plan_attempts`,
        `llm_calls`), where `RunRecord` reads them; the log keeps the rest.
        """
        data: dict[str, Any] = {"round": event.round}
        match event:
            case ev.PlanAttempted():
                valid = None if event.valid is None else int(event.valid)
                attempt = (self.run_id, event.attempt, event.round, event.text, valid, event.error)
                self._writer.put(_NEW, _PLAN_ATTEMPT, attempt)
                data |= {"attempt": event.attempt, "valid": event.valid, "error": event.error}
            case ev.LLMCallFinished():
                self._llm_calls += 1
                digest = hashlib.sha256(event.prompt.encode()).hexdigest()
                tokens = (event.prompt_tokens, event.completion_tokens)
                call = (self.run_id, self._llm_calls, event.purpose, event.model, digest, *tokens)
                self._writer.put(_NEW, _LLM_CALL, (*call, event.latency_s))
                data |= {
                    "n": self._llm_calls,
                    "purpose": event.purpose,
                    "model": event.model,
                    "prompt_tokens": event.prompt_tokens,
                    "completion_tokens": event.completion_tokens,
                    "latency_s": event.latency_s,
                }
            case ev.Decided():
                data |= {
                    "action": event.action,
                    "answer": event.answer,
                    "reason": event.reason,
                    "thought": event.thought,
                }
        return data

    def _stop_runs(self, failure: StoreError) -> None:
        """On the writer thread: a write failed, so stop the runs being recorded."""
        for run in self._runs:
            loop = run.loop
            if loop is None:
                continue
            try:
                loop.call_soon_threadsafe(functools.partial(run.cancel, reason=str(failure)))
            except RuntimeError:
                pass  # the loop has closed: the run is over


_SETTLED_AS: Mapping[type, str] = {
    ev.TaskFailed: "failed",
    ev.TaskSkipped: "skipped",
    ev.TaskCancelledEvent: "cancelled",
}
