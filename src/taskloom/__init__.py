"""taskloom: run an LLM agent's tool calls as a streaming DAG, each the moment its inputs exist."""

import typing as _typing

from taskloom._ids import RunId, TaskId
from taskloom.engine import (
    Budget,
    DurationStats,
    Executor,
    Held,
    InlineExecutor,
    Price,
    Run,
    RunResult,
    RunStatus,
    Runtime,
    TaskResult,
    TaskStatus,
    execute,
    open_run,
)
from taskloom.errors import (
    BadArguments,
    BadOutput,
    CallInterrupted,
    CallTimedOut,
    CommandFailed,
    ConditionError,
    ConditionFalse,
    ConfigError,
    DependencyFailed,
    EditError,
    ExecutorLost,
    LimitExceeded,
    MapFailed,
    MCPError,
    MCPToolError,
    ModelError,
    OutputTooLarge,
    PlanError,
    ProcessToolError,
    RecordedFailure,
    RunError,
    StoreError,
    SubplanFailed,
    TaskCancelled,
    TaskInterrupted,
    TaskloomError,
    ToolDefinitionError,
    ToolFailed,
    ToolTimedOut,
    UserError,
    WorkerCrashed,
)
from taskloom.plan import (
    Graph,
    Guard,
    Handle,
    Plan,
    PlanParser,
    Ref,
    SubplanTool,
    Task,
    Template,
    parse_stream,
)
from taskloom.store import Store, resume
from taskloom.tools import CallPolicy, Resources, Tool, tool
from taskloom.tools.process import ProcessLimits, command_tool, python_tool

if _typing.TYPE_CHECKING:
    from taskloom.agent import Agent, AgentResult, Example

# The agent brings the model clients (httpx, llama.cpp's bindings); it is
# imported on first use, so `import taskloom` stays quick for plain plans.
_LAZY = {"Agent": "taskloom.agent", "AgentResult": "taskloom.agent", "Example": "taskloom.agent"}

__all__ = [
    "Agent",
    "AgentResult",
    "BadArguments",
    "BadOutput",
    "Budget",
    "CallInterrupted",
    "CallPolicy",
    "CallTimedOut",
    "CommandFailed",
    "ConditionError",
    "ConditionFalse",
    "ConfigError",
    "DependencyFailed",
    "DurationStats",
    "EditError",
    "Example",
    "Executor",
    "ExecutorLost",
    "Graph",
    "Guard",
    "Handle",
    "Held",
    "InlineExecutor",
    "LimitExceeded",
    "MCPError",
    "MCPToolError",
    "MapFailed",
    "ModelError",
    "OutputTooLarge",
    "Plan",
    "PlanError",
    "PlanParser",
    "Price",
    "ProcessLimits",
    "ProcessToolError",
    "RecordedFailure",
    "Ref",
    "Resources",
    "Run",
    "RunError",
    "RunId",
    "RunResult",
    "RunStatus",
    "Runtime",
    "Store",
    "StoreError",
    "SubplanFailed",
    "SubplanTool",
    "Task",
    "TaskCancelled",
    "TaskId",
    "TaskInterrupted",
    "TaskResult",
    "TaskStatus",
    "TaskloomError",
    "Template",
    "Tool",
    "ToolDefinitionError",
    "ToolFailed",
    "ToolTimedOut",
    "UserError",
    "WorkerCrashed",
    "command_tool",
    "execute",
    "open_run",
    "parse_stream",
    "python_tool",
    "resume",
    "tool",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> _typing.Any:
    """Import a lazily exported name (`Agent`, `AgentResult`) on first use.

    Raises:
        AttributeError: for a name taskloom does not export.

    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taskloom' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
