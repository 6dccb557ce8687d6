"""Tool: a typed function with a schema and a call policy."""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Protocol, overload

import anyio
import pydantic
from pydantic.fields import FieldInfo

from taskloom._text import clip, quoted, short_repr
from taskloom.errors import CallTimedOut, ToolDefinitionError
from taskloom.tools._limits import ProcessLimits, Resources, function_target
from taskloom.tools._threads import ThreadCall, run_in_thread

__all__ = ["CallPolicy", "CallTimes", "Tool", "tool"]

RESERVED_NAME = "join"
"""The plan language's `join()`, which ends a plan, so no tool may have this name."""
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
"""The characters of a tool name: those MCP allows (letters, digits, `_`, `-`, `.`)."""
MAX_NAME = 128
"""The longest tool name, as in MCP."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CallPolicy:
    """How the scheduler calls a tool."""

    idempotent: bool = False
    """Calling twice with the same arguments is harmless. Only such tools are retried."""
    timeout: float | None = None
    """Seconds one attempt may take before it is cancelled and recorded as timed out."""
    retries: int = 0
    """Extra attempts after a failure (idempotent tools only)."""
    backoff: float = 0.05
    """Delay before the first retry, in seconds; doubled each time, with jitter."""
    max_backoff: float = 5.0
    """Upper bound on one retry delay, in seconds."""
    max_concurrency: int | None = None
    """At most this many calls of the tool run at once in one scheduler."""
    rate_limit: float | None = None
    """At most this many calls start per second (evenly spaced)."""
    cacheable: bool = False
    """Results may be memoised by (name, version, arguments)."""
    isolation: ProcessLimits | None = None
    """Each call runs in a worker process under these limits (`@tool(isolated=True)`)."""
    resources: Resources | None = None
    """What one call needs from a cluster (`taskloom.ray`); inline they change nothing."""

    def __post_init__(self) -> None:
        _check_number("timeout", self.timeout, minimum=0.0, optional=True)
        _check_number("backoff", self.backoff, minimum=0.0, inclusive=True)
        _check_number("max_backoff", self.max_backoff, minimum=0.0, inclusive=True)
        _check_whole("retries", self.retries, minimum=0)
        _check_whole("max_concurrency", self.max_concurrency, minimum=1, optional=True)
        _check_number("rate_limit", self.rate_limit, minimum=0.0, optional=True)

    @property
    def simple(self) -> bool:
        """One attempt, no timeout, no rate limit: the scheduler's fast path."""
        # `attempts == 1`, without a second property call: this is read for every task.
        return (
            self.timeout is None
            and self.rate_limit is None
            and (self.retries == 0 or not self.idempotent)
        )

    @property
    def attempts(self) -> int:
        """How many times one task may call the tool in all."""
        return 1 + self.retries if self.idempotent else 1


def _check_number(
    option: str,
    value: object,
    *,
    minimum: float,
    inclusive: bool = False,
    optional: bool = False,
) -> None:
    """A policy number is a real number above `minimum` (or at it, when `inclusive`).

    Raises:
        ToolDefinitionError: for another type, NaN, or a value out of range.

    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        kind = "a number or None" if optional else "a number"
        raise ToolDefinitionError(f"{option} must be {kind}, got {short_repr(value)}")
    if value < minimum or (value == minimum and not inclusive):
        bound = ">= " if inclusive else "> "
        raise ToolDefinitionError(f"{option} must be {bound}{minimum:g}, got {value}")


def _check_whole(option: str, value: object, *, minimum: int, optional: bool = False) -> None:
    """A policy count is a whole number of at least `minimum`.

    Raises:
        ToolDefinitionError: for another type (True is no count) or a smaller value.

    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "a whole number or None" if optional else "a whole number"
        raise ToolDefinitionError(f"{option} must be {kind}, got {short_repr(value)}")
    if value < minimum:
        raise ToolDefinitionError(f"{option} must be >= {minimum}, got {value}")


class Tool:
    """A function the scheduler can call, with its argument schema and call policy.

    Build one with the `@taskloom.tool` decorator rather than directly.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        policy: CallPolicy | None = None,
        version: str = "1",
    ) -> None:
        """Wrap `fn`, reading its signature, type hints and docstring.

        Raises:
            ToolDefinitionError: if the name has characters other than
                letters, digits, `_`, `-` and `.` or is `join` (which ends a
                plan), a parameter has no type hint or a type
                that JSON arguments cannot give (a callable, a plain class),
                or the function takes *args/**kwargs.

        """
        if not callable(fn):
            raise ToolDefinitionError(f"a tool wraps a function, not {short_repr(fn)}")
        for option, value in (("name", name), ("description", description), ("version", version)):
            if value is not None and not isinstance(value, str):
                raise ToolDefinitionError(f"{option} must be a str, got {short_repr(value)}")
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", ""))
        _check_name(self.name)
        self.description = inspect.cleandoc(description or fn.__doc__ or "").strip()
        self.policy = policy or CallPolicy()
        self.version = version
        # An isolated call is awaited on the pool whatever the function is.
        self.is_async = inspect.iscoroutinefunction(fn) and self.policy.isolation is None
        if self.policy.isolation is not None and not hasattr(fn, "isolated_target"):
            function_target(fn, self.name)  # fails now if a worker could never import it
        self._read_arguments(fn)

    def _read_arguments(self, fn: Callable[..., Any]) -> None:
        """Derive the argument model from `fn`'s signature (a subclass may read another source).

        Sets the parameter names in order, the required ones, and the validator.
        """
        self._model = _arguments_model(fn, self.name)
        fields = self._model.model_fields
        self._positional = tuple(fields)
        self._names = frozenset(fields)
        self._validator = self._model.__pydantic_validator__
        self._required = frozenset(n for n, f in fields.items() if f.is_required())
        self._adapters: dict[str, pydantic.TypeAdapter[Any]] = {}
        self._columns: dict[str, pydantic.TypeAdapter[list[Any]] | None] = {}
        self._types = {n: Any if f.annotation is None else f.annotation for n, f in fields.items()}
        _check_schema(self)

    def __repr__(self) -> str:
        return f"<Tool {self.name}>"

    @property
    def in_thread(self) -> bool:
        """A call runs on a worker thread, which a timeout or a cancellation abandons."""
        return not self.is_async and self.policy.isolation is None

    @property
    def parameters(self) -> tuple[str, ...]:
        """Parameter names, in declaration order."""
        return self._positional

    @functools.cached_property
    def schema(self) -> dict[str, Any]:
        """JSON Schema of the arguments object."""
        schema = self._model.model_json_schema()
        schema.pop("title", None)
        return schema

    def signature(self) -> str:
        """A one-line call signature, as shown to planners: `city(name: str)`."""
        props = self.schema.get("properties", {})
        parts = []
        for param in self._positional:
            kind = props.get(param, {}).get("type", "any")
            parts.append(f"{param}: {kind}" if param in self._required else f"{param}: {kind}=...")
        return f"{self.name}({', '.join(parts)})"

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Map positional and keyword arguments to parameter names.

        Returns:
            The arguments by parameter name (values are not validated yet).

        Raises:
            ValueError: too many positional arguments, an unknown keyword, a
                parameter given twice, or a required parameter missing.

        """
        if len(args) > len(self._positional):
            raise ValueError(
                f"{self.name} takes at most {len(self._positional)} positional "
                f"argument(s) ({', '.join(self._positional) or 'none'}), got {len(args)}"
            )
        bound = dict(zip(self._positional, args, strict=False))
        for key, value in kwargs.items():
            if key not in self._names:
                raise ValueError(
                    f"{self.name} has no parameter {quoted(key)}; "
                    f"its parameters are: {', '.join(self._positional) or 'none'}"
                )
            if key in bound:
                raise ValueError(f"{self.name} got parameter {quoted(key)} twice")
            bound[key] = value
        if len(bound) < len(self._required) or not self._required.issubset(bound):
            missing = [p for p in self._positional if p in self._required and p not in bound]
            raise ValueError(f"{self.name} is missing required argument(s): {', '.join(missing)}")
        return bound

    def parameter_type(self, parameter: str) -> Any:
        """The type hint of a parameter, as the argument schema reads it."""
        return self._types[parameter]

    def check_value(self, parameter: str, value: Any) -> str | None:
        """Validate one literal argument against its parameter's type.

        Returns:
            None when the value fits, else a short description of the problem.

        """
        adapter = self._adapters.get(parameter)
        if adapter is None:
            field = self._model.model_fields[parameter]
            adapter = pydantic.TypeAdapter(Any if field.annotation is None else field.annotation)
            self._adapters[parameter] = adapter
        try:
            adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            return f"{parameter}={short_repr(value)}: {_first_problem(exc)}"
        return None

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Check and coerce arguments by name with the tool's schema.

        Raises:
            ValueError: with a readable description of the first problems.

        """
        try:
            model = self._validator.validate_python(arguments)
        except pydantic.ValidationError as exc:
            raise ValueError(_problems(exc)) from exc
        # The model's own field dict, not copied: callers only read it.
        fields: dict[str, Any] = model.__dict__
        return fields

    def validate_many(
        self, varying: Mapping[str, Sequence[Any]], same: Mapping[str, Any], count: int
    ) -> list[dict[str, Any]] | None:
        """Check and coerce the arguments of `count` calls at once (a map's elements).

        Call `i` has `varying[name][i]` for each name in `varying` and the
        value in `same` for each other name given. Each call's dict is what
        `validate` gives for its arguments, its own copy of every value that
        `validate` copies; with the tool's own schema, each parameter is
        checked for all the calls in one pass.

        Returns:
            One dict of validated arguments per call, in order; None when the
            arguments of some call are bad (`validate` each call to learn which
            and why).

        """
        if count == 0:
            return []
        if type(self).validate is not Tool.validate:  # another schema: call by call
            return self._validate_each(varying, same, count)
        columns: list[Sequence[Any]] = []
        for name, field in self._model.model_fields.items():
            if name in varying or name in same:
                adapter = self._column(name)
                if adapter is None:
                    return self._validate_each(varying, same, count)
                values = varying[name] if name in varying else [same[name]] * count
                try:
                    columns.append(adapter.validate_python(values))
                except pydantic.ValidationError:
                    return None
            elif _shared_default(field):  # `validate` gives the default itself to every call
                columns.append([field.default] * count)
            else:  # a copy of it to each (or a missing argument: each call says so)
                return self._validate_each(varying, same, count)
        names = list(self._model.model_fields)
        if len(names) == 1:  # the usual map: one parameter, its items
            many = [{names[0]: value} for value in columns[0]]
        else:
            many = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
        # Checked once against the tool's own validation: any difference and each is validated.
        try:
            first = self.validate({**same, **{k: v[0] for k, v in varying.items()}})
            alike = first == many[0] and all(type(first[k]) is type(many[0][k]) for k in names)
        except Exception:  # a value's own `==` may raise (an array's): compare no further
            alike = False
        return many if alike else self._validate_each(varying, same, count)

    def _validate_each(
        self, varying: Mapping[str, Sequence[Any]], same: Mapping[str, Any], count: int
    ) -> list[dict[str, Any]] | None:
        try:
            return [
                self.validate({**same, **{k: v[i] for k, v in varying.items()}})
                for i in range(count)
            ]
        except ValueError:
            return None

    def _column(self, parameter: str) -> pydantic.TypeAdapter[list[Any]] | None:
        """Validates a list of values of `parameter` as the tool's model validates one."""
        if parameter not in self._columns:
            field = self._model.model_fields[parameter]
            adapter: pydantic.TypeAdapter[list[Any]] | None = None
            if field.alias is None and field.validation_alias is None:
                hint = Any if field.annotation is None else field.annotation
                column: Any = list[Annotated[hint, field]]  # type: ignore[valid-type]
                config = pydantic.ConfigDict(arbitrary_types_allowed=True)
                try:
                    adapter = pydantic.TypeAdapter(column, config=config)
                except (pydantic.PydanticUserError, TypeError):
                    adapter = None
            self._columns[parameter] = adapter
        return self._columns[parameter]

    def with_latency(self, seconds: float) -> Tool:
        """A copy of this tool that waits `seconds` before every call.

        Benchmarks use it to model remote tools (a web search, an API) with
        the offline ones. The wait is async, so it holds no worker thread.

        Raises:
            ToolDefinitionError: if `seconds` is negative, infinite or NaN.

        """
        if not math.isfinite(seconds) or seconds < 0:  # an infinite wait would never call
            raise ToolDefinitionError(f"latency must be a finite number >= 0, got {seconds}")
        if seconds == 0:
            return self
        original = self

        async def delayed(**arguments: Any) -> Any:
            await anyio.sleep(seconds)
            return await original.call(arguments)

        async def call_through(
            executor: Any,
            arguments: Mapping[str, Any],
            *,
            times: CallTimes | None = None,
            timeout: float | None = None,  # noqa: ASYNC109  (see Tool.call)
        ) -> Any:
            # On an executor that runs calls elsewhere (Ray), the wait is here
            # and the original runs there (see taskloom.engine.Executor).
            await anyio.sleep(seconds)
            return await executor.call(original, arguments, times=times, timeout=timeout)

        clone = copy.copy(self)
        clone.fn = delayed
        clone.is_async = True
        clone.policy = replace(self.policy, isolation=None)  # the original's call isolates
        clone.call_through = call_through  # type: ignore[attr-defined]
        return clone

    async def call(
        self,
        arguments: Mapping[str, Any],
        *,
        times: CallTimes | None = None,
        # Not the caller's `fail_after`: that would count a sync call's wait for a thread.
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        """Call the function with validated arguments; sync functions run in a thread.

        A sync function runs on one of taskloom's daemon worker threads.
        Cancelling the call (a timeout, say) abandons it: it runs on to its
        end on its thread, its result is dropped, and the process does not
        wait for it when it exits. An isolated tool's call runs in a worker
        process instead (see `taskloom.tools.process`); a timeout or a
        cancellation kills the worker's process group.

        Args:
            arguments: the validated arguments, by parameter name.
            times: where to record when the call really ran: `started_at` is
                set if still None (for a sync function: when a thread picked
                it up, not when it began to wait for one); `finished_at` is set
                to when a sync function returned, or None if it was abandoned.
            timeout: seconds the call may take; None for no limit. For a sync
                function it counts from when the call has a worker thread, so
                the wait for a free one (all busy) is not spent from it.

        Returns:
            What the function returned.

        Raises:
            CallTimedOut: the call ran past `timeout` and was abandoned.
            ProcessToolError: an isolated call's worker died, or a limit was passed.
            BaseException: whatever the function raised (SystemExit included).

        """
        if self.policy.isolation is not None:
            from taskloom.tools._pool import call_isolated  # the pool is started on first use

            limits = self.policy.isolation
            return await call_isolated(self, limits, arguments, times=times, timeout=timeout)
        if self.is_async:
            if times is not None and times.started_at is None:
                times.started_at = time.monotonic()
            if timeout is None:
                return await self.fn(**arguments)
            with anyio.move_on_after(timeout):
                return await self.fn(**arguments)
            raise CallTimedOut(self.name, timeout)  # only the timeout leaves the block
        call = ThreadCall(
            functools.partial(_in_thread, self.fn, arguments), asyncio.get_running_loop()
        )
        try:
            result = await run_in_thread(call, timeout=timeout)
        except TimeoutError:
            if call.timed_out:  # not the tool's own TimeoutError
                raise CallTimedOut(self.name, timeout or 0.0) from None
            raise
        finally:
            if times is not None:
                if times.started_at is None:
                    times.started_at = call.started_at
                times.finished_at = call.finished_at
        if type(result) is _Escaped:
            raise result.exc  # raised here, the caller catches it like an async tool's
        return result


class CallTimes(Protocol):
    """Where `Tool.call` records when a call really began and ended (monotonic seconds)."""

    started_at: float | None
    finished_at: float | None


class _Escaped:
    """What a sync tool raised that is not an Exception (SystemExit, GeneratorExit...)."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _in_thread(fn: Callable[..., Any], arguments: Mapping[str, Any]) -> Any:
    """Call a sync tool in its worker thread.

    A BaseException that is not an Exception comes back as a value: delivered
    through the thread's future, a GeneratorExit would skip every `except`
    of the coroutines awaiting it.
    """
    try:
        return fn(**arguments)
    except Exception:
        raise
    except BaseException as exc:
        return _Escaped(exc)


def _check_name(name: str) -> None:
    """A tool name is what MCP allows, so that every MCP tool keeps its own name.

    Raises:
        ToolDefinitionError: for an empty or too long name, another character, or `join`.

    """
    if not name or len(name) > MAX_NAME or not set(name) <= NAME_CHARS:
        raise ToolDefinitionError(
            f"tool name {quoted(name)} must be 1 to {MAX_NAME} letters, digits, '_', '-' or '.'"
        )
    if name == RESERVED_NAME:
        raise ToolDefinitionError(
            f"a tool may not be named {RESERVED_NAME!r}: in a plan, `{RESERVED_NAME}()` "
            "ends the plan; give the tool another name"
        )


def _check_schema(made: Tool) -> None:
    """Every parameter must have a JSON Schema: arguments arrive as JSON values.

    A callable or a plain class (allowed by the model's `arbitrary_types_allowed`,
    so that such a hint fails here with its name rather than deep in pydantic)
    has none: no plan could ever pass one.
    """
    try:
        made.schema  # noqa: B018  (computed now so that a bad hint fails at definition)
    except pydantic.PydanticUserError:
        for parameter in made.parameters:
            hint = made.parameter_type(parameter)
            try:
                pydantic.TypeAdapter(hint).json_schema()
            except pydantic.PydanticUserError:
                raise ToolDefinitionError(
                    f"parameter {parameter!r} of tool {made.name} has type "
                    f"{_type_name(hint)}, which a JSON argument cannot be; "
                    "use JSON-like types (str, int, float, bool, lists, dicts, "
                    "pydantic models, dataclasses)"
                ) from None
        raise


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _arguments_model(fn: Callable[..., Any], tool_name: str) -> type[pydantic.BaseModel]:
    try:
        signature = inspect.signature(fn)
        hints = _type_hints(fn)
    except (TypeError, ValueError, NameError) as exc:
        raise ToolDefinitionError(f"cannot read the signature of {tool_name}: {exc}") from exc
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(f"tool {tool_name} may not take *{param.name} or **kwargs")
        if param.name not in hints:
            raise ToolDefinitionError(
                f"parameter {param.name!r} of tool {tool_name} needs a type hint"
            )
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], default)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return pydantic.create_model(f"{tool_name}_arguments", __config__=config, **fields)


def _shared_default(field: FieldInfo) -> bool:
    """Whether pydantic gives a missing argument this field's default itself (not a copy)."""
    if field.is_required() or field.default_factory is not None or field.validate_default:
        return False
    try:
        hash(field.default)  # pydantic copies a default that cannot be hashed
    except TypeError:
        return False
    return True


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(fn, include_extras=True)


def _first_problem(exc: pydantic.ValidationError) -> str:
    return str(exc.errors(include_url=False)[0]["msg"])


def _problems(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = clip(".".join(str(p) for p in error["loc"]) or "arguments")
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    idempotent: bool | None = None,
    timeout: float | None = None,
    retries: int = 0,
    backoff: float = 0.05,
    max_concurrency: int | None = None,
    rate_limit: float | None = None,
    cacheable: bool = False,
    version: str = "1",
    isolated: bool = False,
    max_memory_mb: float | None = None,
    max_cpu_s: float | None = None,
    max_output_bytes: int | None = None,
    max_processes: int | None = None,
    resources: Resources | Mapping[str, float] | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    idempotent: bool | None = None,
    timeout: float | None = None,
    retries: int = 0,
    backoff: float = 0.05,
    max_concurrency: int | None = None,
    rate_limit: float | None = None,
    cacheable: bool = False,
    version: str = "1",
    isolated: bool = False,
    max_memory_mb: float | None = None,
    max_cpu_s: float | None = None,
    max_output_bytes: int | None = None,
    max_processes: int | None = None,
    resources: Resources | Mapping[str, float] | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a typed function, sync or async, into a Tool.

    Use bare (`@tool`) or with options (`@tool(timeout=10, retries=2)`).

    Args:
        fn: the function, when used bare.
        name: the tool's name; defaults to the function's.
        description: defaults to the function's docstring.
        idempotent: safe to call twice with the same arguments. Defaults to
            `cacheable`: a tool whose results may be reused is assumed to have
            no side effects; otherwise to False.
        timeout: seconds per attempt.
        retries: extra attempts on failure, with exponential backoff and
            jitter; applied only when the tool is idempotent.
        backoff: seconds before the first retry; doubled for each next one.
        max_concurrency: calls of this tool running at once, per scheduler.
        rate_limit: calls started per second.
        cacheable: results may be memoised across runs.
        version: bump when the tool's behaviour changes, to invalidate caches.
        isolated: run each call in a worker process of a warm pool, where a
            crash, os._exit or a limit ends only that call (see
            `taskloom.tools.process`). The function must be importable: at
            the top level of a module, not in `__main__`.
        max_memory_mb: address space one call may add (RLIMIT_AS); isolated only.
        max_cpu_s: CPU seconds one call may use (RLIMIT_CPU); isolated only.
        max_output_bytes: bytes of output read back at most; isolated only.
        max_processes: processes and threads one call may start; isolated only.
        resources: what one call needs on a cluster (`taskloom.ray`): a
            `Resources`, or a mapping such as `{"num_cpus": 2, "gpu_node": 1}`
            (names other than num_cpus, num_gpus and memory are custom).

    Returns:
        A Tool, or a decorator that makes one.

    Raises:
        ToolDefinitionError: if the function or the options are unusable.

    """

    def make(f: Callable[..., Any]) -> Tool:
        try:
            isolation = _isolation(
                isolated,
                max_memory_mb=max_memory_mb,
                max_cpu_s=max_cpu_s,
                max_output_bytes=max_output_bytes,
                max_processes=max_processes,
            )
            policy = CallPolicy(
                idempotent=cacheable if idempotent is None else idempotent,
                timeout=timeout,
                retries=retries,
                backoff=backoff,
                max_concurrency=max_concurrency,
                rate_limit=rate_limit,
                cacheable=cacheable,
                isolation=isolation,
                resources=None if resources is None else Resources.of(resources),
            )
        except ToolDefinitionError as exc:  # say which tool: a module may define many
            label = name if isinstance(name, str) else getattr(f, "__name__", "?")
            raise ToolDefinitionError(f"tool {clip(str(label))}: {exc}") from None
        return Tool(f, name=name, description=description, policy=policy, version=version)

    return make(fn) if fn is not None else make


def _isolation(isolated: bool, **limits: float | None) -> ProcessLimits | None:
    """The process limits of `@tool(isolated=True, ...)`; None for a tool that is not isolated.

    Raises:
        ToolDefinitionError: for a limit without `isolated=True`, or a bad limit.

    """
    given = {option: value for option, value in limits.items() if value is not None}
    if not isolated:
        if given:
            raise ToolDefinitionError(f"{', '.join(given)} needs isolated=True")
        return None
    return ProcessLimits(**given)  # type: ignore[arg-type]
