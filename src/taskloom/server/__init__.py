"""Servers that hand taskloom's Python API to other programs.

`mcp_server` serves it to MCP clients (`taskloom mcp-serve`); it is imported
on first use, so `import taskloom` never loads the MCP SDK.
"""
