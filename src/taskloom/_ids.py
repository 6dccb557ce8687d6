"""The identifiers of taskloom's domain, named once."""

from typing import NewType

TaskId = NewType("TaskId", str)
"""A task's id inside one plan: the number the planner gave it, as text ("1", "12")."""

RunId = NewType("RunId", str)
"""One execution of a plan or one agent request; unique across runs."""
