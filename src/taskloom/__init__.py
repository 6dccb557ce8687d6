"""taskloom: run an LLM agent's tool calls as a streaming DAG, each the moment its inputs exist."""

from taskloom._ids import RunId, TaskId
from taskloom.engine import (
    DurationStats,
    Run,
    RunResult,
    RunStatus,
    TaskResult,
    TaskStatus,
    execute,
    open_run,
)
from taskloom.errors import (
    BadArguments,
    BadOutput,
    ConfigError,
    DependencyFailed,
    EditError,
    ModelError,
    PlanError,
    RunError,
    TaskCancelled,
    TaskloomError,
    ToolDefinitionError,
    ToolFailed,
    ToolTimedOut,
    UserError,
)
from taskloom.plan import Plan, PlanParser, Ref, Task, Template, parse_stream
from taskloom.tools import CallPolicy, Tool, tool

__all__ = [
    "BadArguments",
    "BadOutput",
    "CallPolicy",
    "ConfigError",
    "DependencyFailed",
    "DurationStats",
    "EditError",
    "ModelError",
    "Plan",
    "PlanError",
    "PlanParser",
    "Ref",
    "Run",
    "RunError",
    "RunId",
    "RunResult",
    "RunStatus",
    "Task",
    "TaskCancelled",
    "TaskId",
    "TaskResult",
    "TaskStatus",
    "TaskloomError",
    "Template",
    "Tool",
    "ToolDefinitionError",
    "ToolFailed",
    "ToolTimedOut",
    "UserError",
    "execute",
    "open_run",
    "parse_stream",
    "tool",
]
__version__ = "0.1.0"
