from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import taskloom
from taskloom import ToolDefinitionError, tool


def test_bare_decorator_reads_name_docstring_and_schema() -> None:
    @tool
    def city(name: str, limit: int = 3) -> dict[str, Any]:
        """Facts about a city."""
        return {}

    assert city.name == "city"
    assert city.description == "Facts about a city."
    assert city.schema["properties"]["name"]["type"] == "string"
    assert city.schema["properties"]["limit"]["default"] == 3
    assert city.schema["required"] == ["name"]
    assert city.policy == taskloom.CallPolicy()
    assert not city.is_async


def test_options_build_the_policy() -> None:
    @tool(timeout=10, retries=2, max_concurrency=4, rate_limit=5, cacheable=True, name="lookup")
    async def city(name: str) -> str:
        """Look up."""
        return name

    assert city.name == "lookup"
    assert city.is_async
    assert city.policy.timeout == 10
    assert city.policy.retries == 2
    assert city.policy.max_concurrency == 4
    assert city.policy.rate_limit == 5
    # A cacheable tool's result may be reused, so it is assumed free of side effects.
    assert city.policy.idempotent
    assert city.policy.attempts == 3


def test_retries_apply_only_to_idempotent_tools() -> None:
    @tool(retries=3)
    def send(to: str) -> None:
        """Send a message."""

    assert not send.policy.idempotent
    assert send.policy.attempts == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"rate_limit": -2}, "rate_limit"),
    ],
)
def test_bad_options_are_rejected(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ToolDefinitionError, match=message):

        @tool(**options)
        def f(x: int) -> int:
            return x


def test_parameters_need_type_hints() -> None:
    with pytest.raises(ToolDefinitionError, match="'x'.*type hint"):

        @tool
        def f(x) -> int:  # type: ignore[no-untyped-def]
            return 1


def test_var_args_are_rejected() -> None:
    with pytest.raises(ToolDefinitionError, match="kwargs"):

        @tool
        def f(**kwargs: int) -> int:
            return 1


class Plain:
    """A class that JSON arguments cannot give."""


@pytest.mark.parametrize(
    "hint",
    [Callable[[int], int], Callable[..., Any], Plain, list[Plain], Plain | None],
    ids=["callable", "bare callable", "plain class", "list of plain", "optional plain"],
)
def test_hints_no_json_argument_can_fit_are_rejected_at_definition(hint: Any) -> None:
    def f(x: int, fn: Any) -> int:
        return x

    f.__annotations__["fn"] = hint
    with pytest.raises(ToolDefinitionError, match="parameter 'fn' of tool f has type"):
        tool(f)


def test_json_like_hints_are_accepted() -> None:
    import dataclasses
    import datetime

    import pydantic

    @dataclasses.dataclass
    class Point:
        x: float

    class Query(pydantic.BaseModel):
        text: str

    @tool
    def f(p: Point, q: Query, when: datetime.date, raw: bytes, extra: dict[str, Any]) -> int:
        return 1

    assert set(f.schema["properties"]) == {"p", "q", "when", "raw", "extra"}


def test_join_is_no_tool_name() -> None:
    with pytest.raises(ToolDefinitionError, match="'join'.*ends the plan"):

        @tool
        def join(x: int) -> int:
            return x

    with pytest.raises(ToolDefinitionError, match="'join'"):
        tool(name="join")(lambda x: x)


def test_a_huge_bad_tool_name_is_quoted_short() -> None:
    with pytest.raises(ToolDefinitionError) as caught:
        tool(name="-" * 1_000_000)(lambda: None)
    assert len(str(caught.value)) < 300


def test_two_different_tools_with_one_name_are_a_user_error() -> None:
    from taskloom.plan._plan import tool_map

    @tool(name="same")
    def a() -> int:
        return 1

    @tool(name="same")
    def b() -> int:
        return 2

    with pytest.raises(taskloom.UserError, match="two different tools are named 'same'"):
        tool_map([a, b])
    with pytest.raises(taskloom.UserError, match="two different tools are named 'same'"):
        taskloom.Plan.parse("1. same()\n", tools=[a, b])
    with pytest.raises(taskloom.UserError, match="under the name 'other'"):
        tool_map({"other": a})
    assert tool_map([a, a]) == {"same": a}


def test_a_plain_function_given_twice_is_one_tool() -> None:
    from taskloom.engine._execute import as_tools

    def double(x: int) -> int:
        return 2 * x

    assert list(as_tools([double, double])) == ["double"]


@pytest.mark.anyio
async def test_execute_rejects_two_different_tools_with_one_name() -> None:
    @tool(name="same")
    async def a() -> int:
        return 1

    @tool(name="same")
    async def b() -> int:
        return 2

    with pytest.raises(taskloom.UserError, match="two different tools"):
        await taskloom.execute(taskloom.Plan.parse("1. same()\n"), tools=[a, b])


def test_bind_maps_positional_and_keyword_arguments() -> None:
    @tool
    def f(a: int, b: str = "x", c: float = 1.0) -> None:
        """F."""

    assert f.bind((1,), {"c": 2.5}) == {"a": 1, "c": 2.5}
    with pytest.raises(ValueError, match="at most 3 positional"):
        f.bind((1, 2, 3, 4), {})
    with pytest.raises(ValueError, match="no parameter 'd'"):
        f.bind((1,), {"d": 1})
    with pytest.raises(ValueError, match="twice"):
        f.bind((1,), {"a": 2})
    with pytest.raises(ValueError, match="missing required argument.*a"):
        f.bind((), {"b": "y"})


def test_validate_coerces_and_reports() -> None:
    @tool
    def f(a: int, b: list[str]) -> None:
        """F."""

    assert f.validate({"a": "3", "b": ["x"]}) == {"a": 3, "b": ["x"]}
    with pytest.raises(ValueError, match="a: Input should be a valid integer"):
        f.validate({"a": "three", "b": []})


def test_signature_for_planners() -> None:
    @tool
    def city(name: str, limit: int = 3) -> None:
        """C."""

    assert city.signature() == "city(name: string, limit: integer=...)"


@pytest.mark.anyio
async def test_sync_tools_run_in_a_worker_thread() -> None:
    import threading

    main = threading.get_ident()

    @tool
    def where() -> int:
        """Which thread."""
        return threading.get_ident()

    assert await where.call({}) != main


@pytest.mark.anyio
async def test_async_tools_run_on_the_loop() -> None:
    @tool
    async def double(x: int) -> int:
        """Double."""
        await anyio.lowlevel.checkpoint()
        return 2 * x

    assert await double.call({"x": 4}) == 8


@pytest.mark.anyio
async def test_with_latency_delays_each_call_without_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    real_sleep = anyio.sleep

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    @tool(cacheable=True)
    def double(x: int) -> int:
        """Double."""
        return 2 * x

    slow = double.with_latency(0.05)
    assert slow.name == "double" and slow.schema == double.schema and slow.policy == double.policy
    assert slow.is_async and not double.is_async
    monkeypatch.setattr(anyio, "sleep", sleep)
    assert await slow.call({"x": 3}) == 6
    assert slept == [0.05]  # an async wait of the latency, then the call
    monkeypatch.undo()
    assert double.with_latency(0) is double
    with pytest.raises(ToolDefinitionError):
        double.with_latency(-1)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"timeout": float("nan")}, "timeout must be a number or None, got nan"),
        ({"timeout": "3"}, "timeout must be a number or None, got '3'"),
        ({"timeout": -1}, "timeout must be > 0, got -1"),
        ({"retries": 2.5, "idempotent": True}, "retries must be a whole number, got 2.5"),
        ({"retries": True}, "retries must be a whole number, got True"),
        ({"backoff": float("nan")}, "backoff must be a number, got nan"),
        ({"max_concurrency": 2.5}, "max_concurrency must be a whole number or None"),
        ({"max_concurrency": True}, "max_concurrency must be a whole number or None"),
        ({"rate_limit": float("nan")}, "rate_limit must be a number or None"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_a_call_policy_option_of_the_wrong_type_or_range_names_the_tool(
    options: dict[str, Any], words: str
) -> None:
    with pytest.raises(ToolDefinitionError) as caught:

        @tool(**options)
        def fetch(url: str) -> str:
            return url

    assert str(caught.value).startswith(f"tool fetch: {words}")


@pytest.mark.parametrize("option", ["name", "description", "version"])
def test_a_tool_text_option_that_is_not_a_str_is_a_definition_error(option: str) -> None:
    with pytest.raises(ToolDefinitionError, match=f"{option} must be a str, got 3"):

        @tool(**{option: 3})
        def fetch(url: str) -> str:
            return url


def test_a_tool_of_something_not_callable_is_a_definition_error() -> None:
    with pytest.raises(ToolDefinitionError, match="wraps a function, not 5"):
        tool(5)  # type: ignore[call-overload]


@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), -1.0])
def test_a_latency_that_is_no_finite_wait_is_a_definition_error(seconds: float) -> None:
    @tool
    def fetch(url: str) -> str:
        return url

    with pytest.raises(ToolDefinitionError, match="latency must be a finite number >= 0"):
        fetch.with_latency(seconds)
