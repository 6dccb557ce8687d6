"""The SQLite run store: runs, plans, tasks, events, LLM calls and the call cache."""

from taskloom.store._cache import CacheStats, CallCache, cache_key
from taskloom.store._journal import RunJournal
from taskloom.store._records import (
    EventRecord,
    LlmCallRecord,
    PlanAttemptRecord,
    RunRecord,
    RunSummary,
    TaskRecord,
)
from taskloom.store._resume import restore_tasks, resume
from taskloom.store._store import RecordWatcher, Store, default_store_path

__all__ = [
    "CacheStats",
    "CallCache",
    "EventRecord",
    "LlmCallRecord",
    "PlanAttemptRecord",
    "RecordWatcher",
    "RunJournal",
    "RunRecord",
    "RunSummary",
    "Store",
    "TaskRecord",
    "cache_key",
    "default_store_path",
    "restore_tasks",
    "resume",
]
