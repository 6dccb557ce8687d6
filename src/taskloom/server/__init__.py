"""Servers that hand taskloom's Python API to other programs.

`http` serves it over HTTP (`taskloom serve`: runs, their live events, the
web page); `mcp_server` serves it to MCP clients (`taskloom mcp-serve`).
Both are imported on first use, so `import taskloom` loads no web framework.
"""
