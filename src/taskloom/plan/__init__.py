"""Plans: tasks, references between them, and the DAG they form."""

from taskloom.plan._builder import Graph, Handle
from taskloom.plan._model import Ref, Task, Template
from taskloom.plan._plan import Plan
from taskloom.plan.text import PlanParser, parse_stream

__all__ = ["Graph", "Handle", "Plan", "PlanParser", "Ref", "Task", "Template", "parse_stream"]
