"""The seam between a run and whatever keeps it durably (the SQLite store).

The scheduler imports no store: it calls a `Journal` at the three moments
durability needs it, and the journal reads everything else from events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from taskloom._ids import RunId, TaskId

if TYPE_CHECKING:
    from taskloom.engine._scheduler import Run
    from taskloom.engine.result import RunResult

__all__ = ["Journal"]


class Journal(Protocol):
    """Keeps one run's events and results somewhere that outlives the process."""

    @property
    def run_id(self) -> RunId:
        """The id the run is recorded under; the run takes it."""
        ...

    def attach(self, run: Run) -> None:
        """Start recording `run` (subscribe to its events); called before any task is added."""

    async def before_call(self, task_id: TaskId) -> None:
        """Return once the start of a non-idempotent task is durable.

        The scheduler awaits this before calling a tool that is not idempotent,
        so that after a crash the task is known to have started and is never
        called twice. Raise a TaskloomError if that cannot be promised; the
        task is then cancelled, not called.
        """

    async def close(self, result: RunResult) -> None:
        """Write the run's end and wait until everything is on disk.

        Raises:
            StoreError: if any write failed during the run.

        """
