"""Tools from a JSON Schema, MCP results as outputs, and tool names with `-` and `.`."""

from __future__ import annotations

from typing import Any

import mcp_types
import pytest

import taskloom
from taskloom.agent._grammar import plan_grammar
from taskloom.errors import MCPToolError, ToolDefinitionError
from taskloom.tools._schema import SchemaTool
from taskloom.tools.mcp import _idempotent, _output, load_servers

pytestmark = pytest.mark.anyio

QUERY_SCHEMA = {
    "type": "object",
    "properties": {
        "table": {"type": "string"},
        "limit": {"type": "integer", "minimum": 1, "default": 2},
        "filters": {"type": "array", "items": {"$ref": "#/$defs/Filter"}},
    },
    "required": ["table"],
    "$defs": {"Filter": {"type": "object", "required": ["column"]}},
}


def schema_tool(name: str = "db.query", schema: dict[str, Any] | None = None) -> SchemaTool:
    calls: list[dict[str, Any]] = []

    async def call(**arguments: Any) -> Any:
        calls.append(arguments)
        return arguments

    made = SchemaTool(
        call, name=name, description="Query a table.", input_schema=schema or QUERY_SCHEMA
    )
    made.calls = calls  # type: ignore[attr-defined]
    return made


def test_a_schema_tool_reads_its_parameters_from_the_schema() -> None:
    made = schema_tool()
    assert made.parameters == ("table", "limit", "filters")
    assert made.schema == QUERY_SCHEMA and made.schema is not QUERY_SCHEMA
    assert made.signature() == "db.query(table: string, limit: integer=..., filters: array=...)"
    assert made.parameter_type("table") is str and made.parameter_type("limit") is int
    assert made.is_async and made.description == "Query a table."


def test_a_schema_tool_binds_and_checks_values_like_any_tool() -> None:
    made = schema_tool()
    assert made.bind(("users",), {"limit": 3}) == {"table": "users", "limit": 3}
    with pytest.raises(ValueError, match="missing required argument.*table"):
        made.bind((), {"limit": 3})
    with pytest.raises(ValueError, match="no parameter 'size'"):
        made.bind(("users",), {"size": 3})
    assert made.check_value("limit", 5) is None
    assert "limit=0" in (made.check_value("limit", 0) or "")
    assert made.check_value("filters", [{"column": "a"}]) is None  # $ref into $defs
    assert "column" in (made.check_value("filters", [{}]) or "")
    assert made.check_value("filters", ({"column": "a"},)) is None  # a tuple is an array


def test_validate_lists_the_problems() -> None:
    made = schema_tool()
    assert made.validate({"table": "t", "limit": 1}) == {"table": "t", "limit": 1}
    with pytest.raises(ValueError, match=r"limit: 'many' is not of type 'integer'"):
        made.validate({"table": "t", "limit": "many"})
    with pytest.raises(ValueError, match="'table' is a required property"):
        made.validate({"limit": 1})


def test_an_invalid_schema_is_a_definition_error() -> None:
    with pytest.raises(ToolDefinitionError, match="no valid JSON Schema"):
        schema_tool(schema={"type": "object", "properties": {"a": {"type": "strang"}}})
    with pytest.raises(ToolDefinitionError, match="must be an object"):
        schema_tool(schema=["a"])  # type: ignore[arg-type]


def test_union_types_read_as_python_unions() -> None:
    made = schema_tool(
        schema={
            "type": "object",
            "properties": {
                "a": {"type": ["string", "null"]},
                "b": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "c": {},
            },
        }
    )
    assert made.parameter_type("a") == str | None
    assert made.parameter_type("b") == str | None
    assert made.parameter_type("c") is Any


async def test_a_plan_with_mcp_names_runs_through_schema_tools() -> None:
    query, clock = schema_tool(), schema_tool("get-time", {"type": "object", "properties": {}})
    text = '1. get-time()\n2. db.query("users", limit=3)\n3. db.query($1, 1)\n4. join()'
    plan = taskloom.Plan.parse(text, tools=[query, clock])
    result = await taskloom.execute(plan, tools=[query, clock])
    assert result.tasks[taskloom.TaskId("2")].output == {"table": "users", "limit": 3}
    # A lone `$1` given to a string parameter stays text, as for a `str` hint.
    third = result.tasks[taskloom.TaskId("3")]
    assert third.status is taskloom.TaskStatus.FAILED  # `{}` is no string
    assert "is not of type 'string'" in str(third.error)


def test_a_bad_literal_for_a_schema_tool_is_a_plan_error() -> None:
    with pytest.raises(taskloom.PlanError, match="bad argument for db.query.*limit=0"):
        taskloom.Plan.parse('1. db.query("t", 0)\n2. join()', tools=[schema_tool()])


def test_names_may_hold_dash_and_dot_but_nothing_else() -> None:
    for name in ("get-time", "db.query", "a_b", "2fa", "x" * 128):
        assert taskloom.tool(name=name)(lambda: None).name == name
    for bad in ("get time", "a/b", "é", "", "x" * 129, "a(b"):
        with pytest.raises(ToolDefinitionError, match="letters, digits, '_', '-' or '.'"):
            taskloom.tool(name=bad)(lambda: None)


def test_a_bare_name_two_servers_offer_says_which_to_choose() -> None:
    tools = [schema_tool("a.db.query"), schema_tool("b.db.query"), schema_tool("c.other")]
    with pytest.raises(taskloom.PlanError, match=r"'db.query' is ambiguous.*a\.db\.query, b\."):
        taskloom.Plan.parse('1. db.query("t")\n', tools=tools)
    with pytest.raises(taskloom.PlanError, match="unknown tool 'other'"):
        taskloom.Plan.parse("1. other()\n", tools=tools)  # one qualified match: not ambiguous


def test_the_grammar_gives_each_mcp_name_its_own_rule() -> None:
    tools = [
        schema_tool("get-time", {"type": "object", "properties": {}}),
        schema_tool("get_time", {"type": "object", "properties": {}}),
        schema_tool("db.query"),
    ]
    grammar = plan_grammar(tools, max_tasks=1)
    assert "call-1 ::= tool-get-time-1 | tool-get-time-2-1 | tool-db-query-1\n" in grammar
    assert 'tool-db-query-1 ::= "db.query("' in grammar
    assert 'tool-get-time-2-1 ::= "get_time("' in grammar


def result(**fields: Any) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult.model_validate(fields)


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


def test_structured_content_wins_over_text() -> None:
    out = result(content=[text('{"a": 1}')], structuredContent={"a": 1})
    assert _output("s", "t", out) == {"a": 1}


def test_text_content_is_a_str_or_a_list() -> None:
    assert _output("s", "t", result(content=[text("one")])) == "one"
    assert _output("s", "t", result(content=[text("a"), text("b")])) == ["a", "b"]
    assert _output("s", "t", result(content=[])) is None
    image = {"type": "image", "data": "aGk=", "mimeType": "image/png"}
    assert _output("s", "t", result(content=[text("see"), image])) == ["see", image]


def test_is_error_raises_with_the_servers_message() -> None:
    with pytest.raises(MCPToolError, match="MCP server 's': tool t reported an error: disk full"):
        _output("s", "t", result(content=[text("disk full")], isError=True))
    with pytest.raises(MCPToolError, match="gave no message"):
        _output("s", "t", result(content=[], isError=True))


@pytest.mark.parametrize(
    ("annotations", "configured", "idempotent"),
    [
        (None, None, False),
        ({"readOnlyHint": True}, None, True),
        ({"idempotentHint": True}, None, True),
        ({"destructiveHint": True}, None, False),
        ({"readOnlyHint": True}, False, False),
        (None, True, True),
    ],
)
def test_the_call_policy_follows_the_annotations_unless_configured(
    annotations: dict[str, bool] | None, configured: bool | None, idempotent: bool
) -> None:
    entry: dict[str, Any] = {"command": "x"}
    if configured is not None:
        entry["idempotent"] = configured
    (server,) = load_servers([{"mcpServers": {"s": entry}}])
    spec = mcp_types.Tool.model_validate(
        {"name": "t", "inputSchema": {"type": "object"}, "annotations": annotations}
    )
    assert _idempotent(server, spec) is idempotent


def test_the_joiner_sees_a_record_that_holds_only_nested_values() -> None:
    from taskloom.agent.prompts import result_text

    assert result_text({"result": [{"id": 0}]}) == '{"result": [{"id": 0}]}'  # MCP's wrapping
    # A record with plain fields shows its lists' first items (an answer may name them).
    near = {"name": "Paris", "near": ["Lyon", "Dijon", "Reims", "Lille"]}
    assert result_text(near) == '{"name": "Paris", "near": ["Lyon", "Dijon", "Reims"]}'
