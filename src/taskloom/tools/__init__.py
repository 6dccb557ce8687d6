"""Tools: typed functions with a schema and a call policy."""

from taskloom.tools._tool import CallPolicy, Tool, tool

__all__ = ["CallPolicy", "Tool", "tool"]
