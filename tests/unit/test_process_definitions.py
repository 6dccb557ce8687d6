"""Making isolated tools: what is refused at definition, before any worker process starts."""

from __future__ import annotations

import pytest

import taskloom
from taskloom import ProcessLimits, ToolDefinitionError
from taskloom.tools import world


def top_level(x: int) -> int:
    """A function a worker can import."""
    return x


def test_an_isolated_tool_carries_its_limits() -> None:
    made = taskloom.tool(isolated=True, max_memory_mb=100, max_cpu_s=2, max_output_bytes=10)(
        top_level
    )
    assert made.policy.isolation == ProcessLimits(
        max_memory_mb=100, max_cpu_s=2, max_output_bytes=10
    )
    assert not made.in_thread  # a timeout kills its worker, no thread is abandoned
    assert taskloom.tool(top_level).policy.isolation is None


def test_a_closure_is_refused_with_the_reason() -> None:
    def inner(x: int) -> int:
        return x

    with pytest.raises(ToolDefinitionError, match="defined inside a function"):
        taskloom.tool(isolated=True)(inner)


def test_a_lambda_is_refused() -> None:
    f = lambda x: x  # noqa: E731
    f.__annotations__ = {"x": int}
    with pytest.raises(ToolDefinitionError, match="lambda"):
        taskloom.tool(isolated=True, name="f")(f)


def test_a_function_in_main_is_refused() -> None:
    def script_tool(x: int) -> int:
        return x

    script_tool.__module__ = "__main__"
    script_tool.__qualname__ = "script_tool"
    with pytest.raises(ToolDefinitionError, match="__main__.*cannot be imported again"):
        taskloom.tool(isolated=True)(script_tool)


def test_a_limit_without_isolated_is_refused() -> None:
    with pytest.raises(ToolDefinitionError, match="max_memory_mb needs isolated=True"):
        taskloom.tool(max_memory_mb=10)(top_level)


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("max_memory_mb", 0, "> 0"),
        ("max_memory_mb", float("inf"), "finite"),
        ("max_cpu_s", "1", "a number"),
        ("max_output_bytes", 0, ">= 1"),
        ("max_processes", 1.5, "whole number"),
        ("max_processes", True, "whole number"),
    ],
)
def test_bad_limits_are_refused(option: str, value: object, problem: str) -> None:
    with pytest.raises(ToolDefinitionError, match=f"tool top_level: {option}.*{problem}"):
        taskloom.tool(isolated=True, **{option: value})(top_level)  # type: ignore[call-overload]


def test_a_command_tool_has_a_parameter_per_placeholder() -> None:
    made = taskloom.command_tool("grep", ["grep", "-c", "{pattern}", "--", "{path}", "{pattern}"])
    assert made.parameters == ("pattern", "path")
    assert made.signature() == "grep(pattern: string, path: string)"
    assert "grep -c {pattern}" in made.description
    assert made.policy.isolation is not None


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        ("wc -l {path}", "never one shell string"),
        ([], "non-empty list"),
        (["wc", 3], "list of strings"),
        (["wc", "{}"], "plain name"),
        (["wc", "{path!r}"], "plain name"),
        (["wc", "{n:>3}"], "plain name"),
        (["wc", "{a.b}"], "plain name"),
        (["wc", "{path"], "expected '}'"),
    ],
)
def test_a_bad_command_line_is_refused(argv: object, problem: str) -> None:
    with pytest.raises(ToolDefinitionError, match=problem):
        taskloom.command_tool("wc", argv)  # type: ignore[arg-type]


def test_the_python_tool_is_in_no_tool_set_by_default() -> None:
    names = {t.name for t in world.WORLD_TOOLS}
    assert "python" not in names
    python = taskloom.python_tool()
    assert python.name == "python" and python.parameters == ("code",)
    assert "not a security sandbox" in (taskloom.python_tool.__doc__ or "")


def test_set_max_workers_refuses_a_bad_count() -> None:
    from taskloom.tools.process import set_max_workers

    with pytest.raises(ToolDefinitionError, match="whole number >= 1"):
        set_max_workers(0)


def test_the_command_line_adds_the_python_tool_only_when_enabled() -> None:
    from taskloom import _cli_common, cli

    assert "python" not in cli.load_tools(None)
    assert cli.load_tools(None, python_tool=True)["python"].policy.isolation is not None
    settings = {
        "model": "m",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key": None,
        "tools": None,
        "tool_latency": 0.0,
        "max_replans": 0,
        "max_concurrency": None,
        "grammar": None,
        "budget": None,
    }
    plain = _cli_common.AgentSettings(**settings).build(None)
    enabled = _cli_common.AgentSettings(**settings, python_tool=True).build(None)
    assert "python" not in {t.name for t in plain.tools}
    assert "python" in {t.name for t in enabled.tools}
