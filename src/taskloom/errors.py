"""Every exception taskloom raises or records, in one tree.

```
TaskloomError                   anything taskloom raises on purpose
├── UserError                   the API was used wrongly; fix the calling code
│   ├── ToolDefinitionError     a function cannot become a Tool
│   ├── EditError               a live edit touched a task that has started
│   └── ConfigError             a setting or file given to taskloom is invalid
├── PlanError                   a plan is malformed; carries task id and position
├── RunError                    one task's failure, recorded on the task as data
│   ├── ToolFailed              the tool raised
│   ├── ToolTimedOut            the tool ran past its timeout
│   ├── BadArguments            resolved arguments do not fit the tool's schema
│   ├── BadOutput               the tool returned something that cannot be stored as JSON
│   ├── DependencyFailed        a task this one needs did not produce an output
│   ├── ConditionFalse          the task's condition (or one on its branch) was false: skipped
│   ├── ConditionError          the task's condition could not be evaluated
│   ├── MapFailed               a map could not fan out, or one of its elements failed
│   ├── SubplanFailed           a call of a sub-plan could not start, or one of its tasks failed
│   ├── TaskCancelled           the task or its run was cancelled
│   ├── TaskInterrupted         the process died while a side-effecting task ran
│   └── RecordedFailure         a failure read back from the run store
├── CallTimedOut                `Tool.call` ran past the timeout it was given
├── CallInterrupted             an executor's worker died in a call (a Ray node, say)
├── ExecutorLost                the executor cannot run calls any more: the run ends
├── ProcessToolError            an isolated tool's worker process could not give a result
│   ├── WorkerCrashed           the worker died in the call: a signal, an exit
│   ├── LimitExceeded           the call passed one of its limits (memory, CPU, processes)
│   ├── OutputTooLarge          the call's output passed its max_output_bytes
│   └── CommandFailed           a command tool's command exited with a non-zero status
├── ModelError                  a chat model could not be reached or misbehaved
├── MCPError                    an MCP server could not be started, or crashed mid-call
│   └── MCPToolError            an MCP tool answered with a result marked `isError`
└── StoreError                  the run store cannot be opened, read or written
```

Constructors take facts and build the message; nothing here logs. `RunError`s
are values: the scheduler stores them on `TaskResult.error` and keeps going.
"""

from __future__ import annotations

__all__ = [
    "BadArguments",
    "BadOutput",
    "CallInterrupted",
    "CallTimedOut",
    "CommandFailed",
    "ConditionError",
    "ConditionFalse",
    "ConfigError",
    "DependencyFailed",
    "EditError",
    "ExecutorLost",
    "LimitExceeded",
    "MCPError",
    "MCPToolError",
    "MapFailed",
    "ModelError",
    "OutputTooLarge",
    "PlanError",
    "Position",
    "ProcessToolError",
    "RecordedFailure",
    "RunError",
    "StoreError",
    "SubplanFailed",
    "TaskCancelled",
    "TaskInterrupted",
    "TaskloomError",
    "ToolDefinitionError",
    "ToolFailed",
    "ToolTimedOut",
    "UserError",
    "WorkerCrashed",
]

import signal
from dataclasses import dataclass

from taskloom._text import clip, escape_surrogates, exception_text, excerpt_at


class TaskloomError(Exception):
    """Base of every exception taskloom raises on purpose."""


class UserError(TaskloomError):
    """The API was used in a way it does not support."""


class ToolDefinitionError(UserError):
    """A function cannot be turned into a Tool (missing hints, bad options...)."""


class ConfigError(UserError):
    """A setting, flag or file given to taskloom is invalid."""


class EditError(UserError):
    """A live edit touched a task that can no longer change."""

    def __init__(self, task_id: str, state: str, action: str) -> None:
        self.task_id = task_id
        self.state = state
        self.action = action
        super().__init__(
            f"cannot {action} task {task_id}: it is {state}; "
            "only tasks that have not started may be edited"
        )


@dataclass(frozen=True, slots=True)
class Position:
    """Where in a plan's text something is, counted from 1."""

    line: int
    """Line number, from 1."""
    column: int
    """Column number in characters, from 1."""

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}"


class PlanError(TaskloomError):
    """A plan is malformed: it cannot be parsed, or it does not fit the tools.

    The message names the task, the position in the text and what is wrong,
    in words that can be handed back to an LLM for repair.
    """

    def __init__(
        self,
        reason: str,
        *,
        task_id: str | None = None,
        position: Position | None = None,
        line_text: str | None = None,
    ) -> None:
        # Reasons quote short excerpts of the plan; the clip is a last guard.
        self.reason = clip(reason, _MAX_REASON)
        self.task_id = task_id
        self.position = position
        self.line_text = None if line_text is None else excerpt_at(line_text, _column(position))
        """The part of the line around the position (the whole line when short)."""
        where = []
        if task_id is not None:
            where.append(f"task {clip(task_id)}")
        if position is not None:
            where.append(str(position))
        prefix = f"{', '.join(where)}: " if where else ""
        message = prefix + self.reason
        if self.line_text is not None:
            message += f"\n    {self.line_text}"
        super().__init__(message)


_MAX_REASON = 600
"""Characters of a PlanError's reason: enough for any message taskloom writes."""


def _column(position: Position | None) -> int:
    return 1 if position is None else position.column


_MAX_CAUSE = 500
"""Characters of a tool's own message (or another task's error) quoted in an error."""


class RunError(TaskloomError):
    """A task did not produce an output; stored on its `TaskResult.error`."""

    def __init__(self, task_id: str, message: str) -> None:
        self.task_id = task_id
        super().__init__(message)


class ToolFailed(RunError):
    """The tool raised an exception."""

    def __init__(self, task_id: str, tool: str, cause: BaseException) -> None:
        self.tool = tool
        self.cause_type = type(cause).__name__
        self.cause_message = escape_surrogates(exception_text(cause))
        """The exception's message in full; the error's own message quotes an excerpt."""
        # SystemExit, KeyboardInterrupt and the like would end the process; a
        # tool may not do that, so they end only its task, and the message says so.
        note = "" if isinstance(cause, Exception) else " (a tool may not stop the process)"
        shown = clip(self.cause_message, _MAX_CAUSE)
        said = f": {shown}" if shown else ""  # `raise KeyError()` has no message to quote
        super().__init__(task_id, f"{tool} raised {self.cause_type}{said}{note}")


class CallTimedOut(TaskloomError):
    """`Tool.call` ran past the timeout it was given; the call was abandoned.

    The scheduler records it on the task as `ToolTimedOut`.
    """

    def __init__(self, tool: str, timeout: float, *, stopped: str | None = None) -> None:
        self.tool = tool
        self.timeout = timeout
        self.stopped = stopped
        """How an executor stopped the call (`its Ray task was cancelled`); None: inline."""
        super().__init__(f"{tool} did not finish within {timeout:g}s")


class CallInterrupted(TaskloomError):
    """The worker running a call died (a Ray worker or node): whether it had an effect is unknown.

    An executor raises it; the scheduler records an idempotent tool's call as
    `ToolFailed` (and retries it under its policy) and any other as
    `TaskInterrupted`, never calling it again.
    """

    def __init__(self, tool: str, where: str) -> None:
        self.tool = tool
        self.where = where
        """What died, in words: `the Ray node running it died`."""
        super().__init__(f"{tool} did not finish: {where}")


class ExecutorLost(TaskloomError):
    """The executor can run no more calls (the connection to a Ray cluster was lost).

    The run ends with this error (`open_run` raises it). A plan run kept in a
    store is left as a crash leaves it, so `resume` finishes it later.
    """

    def __init__(self, executor: str, problem: str) -> None:
        self.executor = executor
        self.problem = problem
        super().__init__(f"{executor}: {clip(problem, _MAX_CAUSE)}")


class ProcessToolError(TaskloomError):
    """An isolated tool's call ended without a result of its own (see `taskloom.tools.process`).

    `Tool.call` raises it; the scheduler records it on the task as `ToolFailed`.
    """

    def __init__(self, tool: str, message: str) -> None:
        self.tool = tool
        super().__init__(message)


class WorkerCrashed(ProcessToolError):
    """The worker process died during the call: killed by a signal, or it exited."""

    def __init__(self, tool: str, *, signal_name: str | None, exit_code: int | None) -> None:
        self.signal_name = signal_name
        """The signal that killed the worker (`SIGSEGV`...), or None if it exited."""
        self.exit_code = exit_code
        """The worker's exit status when it exited by itself, else None."""
        if signal_name is not None:
            how = f"was killed by {signal_name}"
        elif exit_code is not None:
            how = f"exited with status {exit_code} (os._exit or a crash)"
        else:
            how = "ended, and its keeper process with it (killed from outside)"
        super().__init__(
            tool, f"the worker process running {tool} {how}; the next call gets a new worker"
        )


class LimitExceeded(ProcessToolError):
    """The call passed one of its limits; `limit` names which (`max_memory_mb`...)."""

    def __init__(self, tool: str, limit: str, value: float, how: str) -> None:
        self.limit = limit
        self.value = value
        self.how = how
        """What the operating system did (a MemoryError, SIGXCPU, a failed fork)."""
        super().__init__(tool, f"{tool} passed its limit {limit}={value:g}: {how}")


class OutputTooLarge(ProcessToolError):
    """The call's output was larger than its `max_output_bytes`; it was not read."""

    def __init__(self, tool: str, size: int | None, limit: int) -> None:
        self.size = size
        """How large the output was, in bytes, when known."""
        self.limit = limit
        shown = f" ({size:,} bytes)" if size is not None else ""
        super().__init__(
            tool, f"output too large: {tool} gave more than max_output_bytes={limit:,}{shown}"
        )


class CommandFailed(ProcessToolError):
    """A command tool's command exited with a non-zero status (or was killed by a signal)."""

    def __init__(self, tool: str, status: int, stderr_tail: str) -> None:
        self.status = status
        """The exit status; negative: killed by that signal number."""
        self.stderr_tail = stderr_tail
        """The end of what the command wrote to stderr."""
        if status < 0:
            how = f"was killed by {signal_name(-status)}"
        else:
            how = f"exited with status {status}"
        tail = clip(stderr_tail.strip(), _MAX_CAUSE)
        said = f"; stderr ends: {tail}" if tail else ""
        super().__init__(tool, f"the command of {tool} {how}{said}")


class ToolTimedOut(RunError):
    """The tool ran longer than its timeout."""

    def __init__(
        self,
        task_id: str,
        tool: str,
        timeout: float,
        *,
        thread_abandoned: bool,
        worker_killed: bool = False,
        stopped: str | None = None,
    ) -> None:
        self.tool = tool
        self.timeout = timeout
        self.thread_abandoned = thread_abandoned
        self.worker_killed = worker_killed
        """An isolated tool's worker process group was killed."""
        self.stopped = stopped
        """How an executor stopped the call (`its Ray task was cancelled`), if one ran it."""
        note = " (its worker thread was abandoned)" if thread_abandoned else ""
        if worker_killed:
            note = " (its worker process group was killed)"
        if stopped is not None:
            note = f" ({stopped})"
        super().__init__(task_id, f"{tool} did not finish within {timeout:g}s{note}")


class BadArguments(RunError):
    """The resolved arguments do not fit the tool's schema."""

    def __init__(self, task_id: str, tool: str, problem: str) -> None:
        self.tool = tool
        self.problem = problem
        super().__init__(task_id, f"bad arguments for {tool}: {clip(problem, _MAX_CAUSE)}")


class BadOutput(RunError):
    """The tool returned a value that cannot be stored, encoded as JSON or printed."""

    def __init__(self, task_id: str, tool: str, type_name: str, problem: str | None = None) -> None:
        self.tool = tool
        self.type_name = type_name
        self.problem = problem
        """What about the value cannot be encoded, when known."""
        why = f": {problem}" if problem else ""
        article = "an" if type_name[:1].lower() in "aeiou" else "a"
        super().__init__(
            task_id, f"{tool} returned {article} {type_name} that cannot be serialised to JSON{why}"
        )


class DependencyFailed(RunError):
    """A task this one depends on did not produce an output, so it was skipped."""

    def __init__(self, task_id: str, dependency: str, cause: str) -> None:
        self.dependency = dependency
        self.cause = cause
        # Clipped: along a chain of skipped tasks each message holds the one before it.
        shown = clip(cause, _MAX_CAUSE)
        super().__init__(task_id, f"skipped because task {dependency} did not finish: {shown}")


class ConditionFalse(RunError):
    """The task was skipped because a condition was false.

    The condition is its own, or that of a task it needs (skipped the same
    way). Unlike `DependencyFailed` this is no failure: the plan chose the other
    branch. A reference written `$N?` accepts such a task as None.
    """

    def __init__(self, task_id: str, guarded: str, condition: str) -> None:
        self.guarded = guarded
        """The task whose condition was false (this one, or one it needs)."""
        self.condition = condition
        """That condition, as written."""
        shown = clip(condition, _MAX_CAUSE)
        if guarded == task_id:
            message = f"condition false: {shown}"
        else:
            message = f"condition false: task {guarded} did not run ({shown})"
        super().__init__(task_id, message)


class ConditionError(RunError):
    """The task's condition could not be evaluated on the outputs it references."""

    def __init__(self, task_id: str, condition: str, problem: str) -> None:
        self.condition = condition
        self.problem = problem
        super().__init__(
            task_id,
            f"cannot evaluate the condition {clip(condition, 200)}: {clip(problem, _MAX_CAUSE)}",
        )


class MapFailed(RunError):
    """A map task (`city($2.names[*])`) did not produce its list of outputs.

    Either it could not fan out (what it maps over is no list, or the lists it
    zips differ in length), or one of its elements did not finish; `element`
    then names that element, whose own error says why.
    """

    def __init__(self, task_id: str, problem: str, *, element: str | None = None) -> None:
        self.problem = problem
        self.element = element
        """The element that did not finish, if that is why."""
        super().__init__(task_id, f"map failed: {clip(problem, _MAX_CAUSE)}")


class SubplanFailed(RunError):
    """A call of a sub-plan (`Plan.as_tool`) did not produce its output.

    Either it could not start (it calls itself, say), or one of its tasks
    did not finish; `inner` then names that task (`4/2`), whose own error
    says why.
    """

    def __init__(self, task_id: str, tool: str, problem: str, *, inner: str | None = None) -> None:
        self.tool = tool
        self.problem = problem
        self.inner = inner
        """The sub-plan's task that did not finish, if that is why."""
        super().__init__(task_id, f"sub-plan {tool} failed: {clip(problem, _MAX_CAUSE)}")


class TaskCancelled(RunError):
    """The task, an ancestor of it, or its whole run was cancelled."""

    def __init__(self, task_id: str, reason: str, *, thread_abandoned: bool = False) -> None:
        self.reason = reason
        self.thread_abandoned = thread_abandoned
        note = " (its worker thread was abandoned)" if thread_abandoned else ""
        super().__init__(task_id, f"cancelled: {reason}{note}")


class TaskInterrupted(RunError):
    """The process died while the task ran, and its tool is not idempotent.

    Calling it again could repeat a side effect (an email, a payment), so a
    resumed run does not: the task ends here and the joiner decides.
    """

    def __init__(self, task_id: str, tool: str, *, stopped: str = "the process stopped") -> None:
        self.tool = tool
        self.stopped = stopped
        """What stopped it: the process, or the worker that ran it (a Ray node)."""
        super().__init__(
            task_id,
            f"{tool} was running when {stopped}; it is not idempotent, "
            "so it was not called again (its side effect may or may not have happened)",
        )


class RecordedFailure(RunError):
    """A task failure read back from the run store, when a run is resumed."""

    def __init__(self, task_id: str, kind: str, message: str) -> None:
        self.kind = kind
        """The class name of the original error (`ToolFailed`, `ToolTimedOut`...)."""
        self.message = message
        super().__init__(task_id, message)


class ModelError(TaskloomError):
    """A chat model could not be reached, timed out, or answered with garbage."""

    def __init__(self, model: str, problem: str, *, retryable: bool = False) -> None:
        self.model = model
        self.problem = problem
        self.retryable = retryable
        super().__init__(f"model {model}: {problem}")


class MCPError(TaskloomError):
    """An MCP server could not be started or reached, or it went away during a call.

    Raised by `taskloom.tools.mcp.connect` when a server does not start, and
    by an MCP tool's call when its server crashes or closes the connection;
    the scheduler records the latter on the task as `ToolFailed`.
    """

    def __init__(self, server: str, problem: str) -> None:
        self.server = server
        self.problem = problem
        super().__init__(f"MCP server {clip(server)!r}: {clip(problem, _MAX_CAUSE)}")


class MCPToolError(MCPError):
    """An MCP tool answered with a result marked `isError`; the message is the server's."""

    def __init__(self, server: str, tool: str, message: str) -> None:
        self.tool = tool
        self.message = message
        said = message.strip() or "(the server gave no message)"
        super().__init__(server, f"tool {clip(tool)} reported an error: {said}")


class StoreError(TaskloomError):
    """The run store cannot be opened, read or written; the data on disk is left as it was."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"run store {path}: {problem}")


def signal_name(number: int) -> str:
    """`SIGSEGV (Segmentation fault)` for 11; `signal 99` for a number with no name."""
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
    described = signal.strsignal(number)
    return f"{name} ({described})" if described else name
