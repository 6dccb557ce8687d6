"""Tools: typed functions with a schema and a call policy."""

from taskloom.tools._limits import Resources
from taskloom.tools._tool import CallPolicy, Tool, tool

__all__ = ["CallPolicy", "Resources", "Tool", "tool"]
