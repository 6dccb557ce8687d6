"""How a tool's function reaches a Ray worker: by module reference, or by value.

By reference the worker imports the tool's module and takes the function
from it: nothing but two names travel, and the worker runs the code it has
installed. That needs the module on the worker's path. When it is not (a
tool in `__main__`, in a function, or in a module the workers do not have),
the function travels by value: cloudpickle writes its code and what it
closes over. A function that neither way can carry is refused with the
reasons for both.

This module is imported on the workers too; Ray's own cloudpickle is
imported only where a function is written or an exception checked.
"""

from __future__ import annotations

import importlib
import pickle
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskloom._text import clip
from taskloom.errors import UserError
from taskloom.tools._limits import _unshippable

__all__ = [
    "Shipped",
    "Unloadable",
    "by_reference",
    "by_value",
    "load",
    "portable",
]

BY_REFERENCE = "reference"
BY_VALUE = "value"


@dataclass(frozen=True, slots=True)
class Shipped:
    """What a worker needs to find a tool's function: a reference or the function's bytes."""

    key: str
    """Names this function for the worker's cache of loaded functions."""
    how: str
    """`reference` or `value`."""
    module: str = ""
    """The module to import (by reference)."""
    qualname: str = ""
    """The function's (or its Tool's) name in that module (by reference)."""
    data: bytes = b""
    """The pickled function (by value)."""


class Unloadable(Exception):  # noqa: N818  (a value the worker sends back, not raised at users)
    """A worker could not load the function it was sent (its module is not there, say)."""


def by_reference(fn: Callable[..., Any], key: str) -> Shipped | None:
    """The function by module and name, or None if it has none a worker could import."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if _unshippable(module, qualname) is not None:
        return None
    assert isinstance(module, str) and isinstance(qualname, str)
    return Shipped(key=key, how=BY_REFERENCE, module=module, qualname=qualname)


_PICKLING = threading.Lock()
"""cloudpickle's by-value registry is global: one function is written at a time."""


def by_value(fn: Callable[..., Any], key: str, tool: str, why_not_reference: str) -> Shipped:
    """The function itself, pickled with cloudpickle (its module's code included).

    Raises:
        UserError: if the function cannot be pickled either; the message says
            why it could not go by reference and why not by value.

    """
    from ray import cloudpickle  # the workers unpickle with Ray's own copy

    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    registered = False
    with _PICKLING:
        try:
            if module is not None and module.__name__ != "__main__":
                try:
                    cloudpickle.register_pickle_by_value(module)
                    registered = True
                except ValueError:
                    pass  # a package's own module: cloudpickle writes it by reference anyway
            data = cloudpickle.dumps(fn)
        except Exception as exc:
            raise UserError(
                f"tool {tool} cannot be shipped to Ray workers: {why_not_reference}, and "
                f"pickling it by value failed ({type(exc).__name__}: {clip(str(exc), 300)}); "
                "define it at the top level of a module the workers can import"
            ) from exc
        finally:
            if registered:
                assert module is not None
                cloudpickle.unregister_pickle_by_value(module)
    return Shipped(key=key, how=BY_VALUE, data=data)


# -- on the worker -------------------------------------------------------------

_LOADED: dict[str, Callable[..., Any]] = {}
"""Functions this worker process has loaded, by `Shipped.key`."""


def load(shipped: Shipped) -> Callable[..., Any]:
    """The function `shipped` names, loaded once per worker process.

    Returns:
        The function (a Tool found by reference gives its `fn`).

    Raises:
        Unloadable: if the module cannot be imported, lacks the name, or the
            bytes cannot be unpickled here.

    """
    fn = _LOADED.get(shipped.key)
    if fn is not None:
        return fn
    try:
        if shipped.how == BY_REFERENCE:
            found: Any = importlib.import_module(shipped.module)
            for part in shipped.qualname.split("."):
                found = getattr(found, part)
        else:
            found = pickle.loads(shipped.data)
    except Exception as exc:
        raise Unloadable(f"{type(exc).__name__}: {clip(str(exc), 300)}") from None
    fn = getattr(found, "fn", found)  # @tool made the module attribute a Tool
    if not callable(fn):
        raise Unloadable(f"{shipped.module}.{shipped.qualname} is not a function")
    _LOADED[shipped.key] = fn
    return fn  # type: ignore[no-any-return]


class RemoteError(Exception):
    """A tool's exception that could not travel back as itself (a subclass of its name)."""


def portable(exc: BaseException) -> BaseException:
    """The tool's exception as the driver can receive it: itself, or a stand-in of its name.

    The stand-in is an exception class of the same name, so the task's
    `ToolFailed` reads as it would inline.
    """
    try:
        from ray import cloudpickle

        pickle.loads(cloudpickle.dumps(exc))
    except Exception:
        stand_in: type[RemoteError] = type(type(exc).__name__, (RemoteError,), {})
        return stand_in(str(exc))
    return exc
