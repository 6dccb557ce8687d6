"""Plans: tasks, references between them, and the DAG they form."""

from taskloom.plan._args import parse_guard
from taskloom.plan._builder import Graph, Handle
from taskloom.plan._model import Guard, Ref, Task, Template
from taskloom.plan._plan import Plan
from taskloom.plan._subplan import SubplanTool, load_subplan
from taskloom.plan.text import PlanParser, parse_stream

__all__ = [
    "Graph",
    "Guard",
    "Handle",
    "Plan",
    "PlanParser",
    "Ref",
    "SubplanTool",
    "Task",
    "Template",
    "load_subplan",
    "parse_guard",
    "parse_stream",
]
