"""A Tool whose arguments a JSON Schema describes, rather than a Python signature.

MCP servers describe each tool's arguments with a JSON Schema. `SchemaTool`
keeps that schema as the tool's own and validates with it (through
`jsonschema`), while the scheduler and the plan checks use it as they use
any Tool: `bind`, `validate`, `check_value`, `parameter_type`, `schema`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from taskloom._text import clip, short_repr
from taskloom.errors import ToolDefinitionError
from taskloom.tools._tool import CallPolicy, Tool

__all__ = ["SchemaTool"]

_PYTHON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list[Any],
    "object": dict[str, Any],
    "null": type(None),
}
"""The Python type a plan check reads for each JSON type (`wants_text` needs `str`)."""
_PROBLEMS = 5
"""Validation problems one error message lists."""


class SchemaTool(Tool):
    """A tool that takes its arguments by the names of a JSON Schema's properties.

    `fn` is called with the validated arguments as keywords. The arguments'
    order (for positional use in a plan) is the order of `properties`.
    """

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        *,
        name: str,
        description: str,
        input_schema: Mapping[str, Any],
        policy: CallPolicy | None = None,
        version: str = "1",
    ) -> None:
        """Wrap `fn`, an async function taking `**arguments`.

        Raises:
            ToolDefinitionError: if the name is unusable (as for any tool) or
                the schema is no valid JSON Schema of an object.

        """
        self._input_schema = _object_schema(name, input_schema)
        super().__init__(fn, name=name, description=description, policy=policy, version=version)

    def _read_arguments(self, fn: Callable[..., Any]) -> None:
        """Read the parameters from the schema's `properties` and `required`."""
        schema = self._input_schema
        properties = schema.get("properties", {})
        self._positional = tuple(properties)
        self._names = frozenset(properties)
        self._required = frozenset(n for n in schema.get("required", ()) if n in properties)
        self._schema_validator = _validator(schema)
        self._property_validators: dict[str, Any] = {}

    @functools.cached_property
    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the arguments object, as the tool's source gave it."""
        return copy.deepcopy(self._input_schema)

    def parameter_type(self, parameter: str) -> Any:
        """The Python type that matches the parameter's JSON type (Any when it is not one)."""
        return _python_type(self._input_schema.get("properties", {}).get(parameter, {}))

    def check_value(self, parameter: str, value: Any) -> str | None:
        """Validate one literal argument against its property's schema.

        Returns:
            None when the value fits, else a short description of the problem.

        """
        validator = self._property_validators.get(parameter)
        if validator is None:
            validator = _validator(self._property_schema(parameter))
            self._property_validators[parameter] = validator
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is None:
            return None
        return f"{parameter}={short_repr(value)}: {clip(error.message)}"

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Check arguments by name against the schema; values are passed on as they are.

        Raises:
            ValueError: with a readable description of the first problems.

        """
        errors = sorted(self._schema_validator.iter_errors(dict(arguments)), key=_error_order)
        if errors:
            raise ValueError("; ".join(_problem(e) for e in errors[:_PROBLEMS]))
        return dict(arguments)

    def _property_schema(self, parameter: str) -> dict[str, Any]:
        """The schema of one property, with the definitions its `$ref`s may point to."""
        schema = dict(self._input_schema["properties"][parameter])
        for key in ("$defs", "definitions"):
            if key in self._input_schema:
                schema.setdefault(key, self._input_schema[key])
        return schema


def _object_schema(name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema, checked to be a valid JSON Schema whose properties are named.

    Raises:
        ToolDefinitionError: for a schema that is no mapping, is invalid, or
            whose `properties` is no mapping.

    """
    if not isinstance(schema, Mapping):
        raise ToolDefinitionError(
            f"the input schema of tool {clip(name)} must be an object, got {short_repr(schema)}"
        )
    checked = dict(schema)
    try:
        jsonschema.validators.validator_for(checked).check_schema(checked)
    except jsonschema.exceptions.SchemaError as exc:
        raise ToolDefinitionError(
            f"the input schema of tool {clip(name)} is no valid JSON Schema: {clip(exc.message)}"
        ) from None
    if not isinstance(checked.get("properties", {}), Mapping):
        raise ToolDefinitionError(f"the input schema of tool {clip(name)} has no named properties")
    return checked


def _validator(schema: Mapping[str, Any]) -> Any:
    """A validator for `schema`, reading a tuple as an array (plan arguments may be tuples)."""
    base = jsonschema.validators.validator_for(schema)
    checker = base.TYPE_CHECKER.redefine("array", _is_array)
    return jsonschema.validators.extend(base, type_checker=checker)(schema)


def _is_array(_checker: Any, value: Any) -> bool:
    return isinstance(value, list | tuple)


def _python_type(schema: Mapping[str, Any]) -> Any:
    """`str` for a string property (so a lone `$1` in it stays text), and so on."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return _PYTHON_TYPES.get(kind, Any)
    if isinstance(kind, list) and kind and all(k in _PYTHON_TYPES for k in kind):
        members = tuple(_PYTHON_TYPES[k] for k in kind)
        union: Any = members[0]
        for member in members[1:]:
            union = union | member
        return union
    options = schema.get("anyOf")
    if isinstance(options, list) and options:
        types = [_python_type(o) if isinstance(o, Mapping) else Any for o in options]
        if Any not in types:
            union = types[0]
            for member in types[1:]:
                union = union | member
            return union
    return Any


def _error_order(error: jsonschema.exceptions.ValidationError) -> tuple[int, str]:
    return (len(error.path), str(list(error.path)))


def _problem(error: jsonschema.exceptions.ValidationError) -> str:
    where = ".".join(str(p) for p in error.path) or "arguments"
    return f"{clip(where)}: {clip(error.message)}"
