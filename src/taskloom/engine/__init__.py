"""The engine: the scheduler, its events, the RunResult and the shared Runtime."""

from taskloom.engine._budget import Budget, Price
from taskloom.engine._execute import execute, open_run
from taskloom.engine._executor import Executor, Held, InlineExecutor
from taskloom.engine._journal import Journal
from taskloom.engine._runtime import Runtime
from taskloom.engine._scheduler import Run
from taskloom.engine._stats import DurationStats
from taskloom.engine.result import RunResult, RunStatus, TaskResult, TaskStatus

__all__ = [
    "Budget",
    "DurationStats",
    "Executor",
    "Held",
    "InlineExecutor",
    "Journal",
    "Price",
    "Run",
    "RunResult",
    "RunStatus",
    "Runtime",
    "TaskResult",
    "TaskStatus",
    "execute",
    "open_run",
]
