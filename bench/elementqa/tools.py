"""ElementQA's tools: the chemical elements and compounds, from the offline `periodictable` package.

They share nothing with the built-in world tools (no names, no data, no
evaluator), so a benchmark over them shows how the agent plans over tools it
has never seen examples for. Load them on the command line with

    taskloom run --no-world --tools bench/elementqa/tools.py "What is the molar mass of H2O?"

Each tool raises an error of this module with a clear message for input it
cannot answer (`UnknownElement`, `FormulaError`, `CalculationError`); the
agent sees that message as the task's error.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Any

import periodictable
from periodictable.core import Element

from taskloom import tool

__all__ = [
    "ELEMENT_TOOLS",
    "CalculationError",
    "FormulaError",
    "UnknownElement",
    "calculate",
    "element",
    "molar_mass",
]

_MAX_TEXT = 200
_MAX_EXPRESSION = 500
# British and older spellings a question may use; periodictable spells them the US way.
_ALIASES = {"aluminium": "aluminum", "caesium": "cesium", "sulphur": "sulfur"}
_FORMULA = re.compile(r"[A-Za-z0-9()]+")


class UnknownElement(LookupError):
    """No chemical element has the given name, symbol or atomic number."""


class FormulaError(ValueError):
    """A chemical formula is empty, malformed, or names an unknown element."""


class CalculationError(ValueError):
    """An arithmetic expression is malformed, not allowed, or has no finite value."""


def _elements_by_name() -> dict[str, Element]:
    table: dict[str, Element] = {}
    for item in periodictable.elements:
        if item.number == 0:  # the neutron "element" n: not a chemical element
            continue
        table[item.name.casefold()] = item
        table[item.symbol.casefold()] = item
    for alias, name in _ALIASES.items():
        table[alias] = table[name]
    return table


_BY_NAME = _elements_by_name()


def _find(name: str) -> Element:
    text = name.strip()
    if not text:
        raise UnknownElement("give an element's name or symbol, such as 'iron' or 'Fe'")
    if len(text) > _MAX_TEXT:
        raise UnknownElement(f"an element's name is at most {_MAX_TEXT} characters")
    found = _BY_NAME.get(text.casefold())
    if found is None and text.isdigit():
        number = int(text)
        found = next((e for e in _BY_NAME.values() if e.number == number), None)
    if found is None:
        raise UnknownElement(
            f"no element is called {text!r}; give a name ('iron') or symbol ('Fe')"
        )
    return found


def _density(item: Element) -> float | None:
    density = item.density
    return None if density is None else float(density)


@tool(cacheable=True)
def element(name: str) -> dict[str, Any]:
    """Look up a chemical element by its name, symbol or atomic number.

    Args:
        name: e.g. "iron", "Fe" or "26"; case does not matter, and British
            spellings ("aluminium", "sulphur") are understood.

    Returns:
        {"name": "Iron", "symbol": "Fe", "number": 26, "mass": 55.845,
        "density": 7.874}: the standard atomic mass in g/mol (u) and the
        density in g/cm3 (None where the table has none).

    Raises:
        UnknownElement: no element has that name, symbol or number.

    """
    item = _find(name)
    return {
        "name": item.name.capitalize(),
        "symbol": item.symbol,
        "number": int(item.number),
        "mass": float(item.mass),
        "density": _density(item),
    }


def _formula_hint(text: str) -> str:
    # An element's name where a formula belongs is the likeliest slip: say what to call.
    named = _BY_NAME.get(text.casefold())
    if named is not None and len(text) > 2:
        return (
            f"that is the element {named.name}, not a formula; element({text!r}) looks it "
            f"up, or write its symbol, {named.symbol!r}"
        )
    return "check the element symbols and their capitals (H2O, NaCl)"


@tool(cacheable=True)
def molar_mass(formula: str) -> dict[str, Any]:
    """The molar mass of a compound given by its chemical formula.

    Args:
        formula: e.g. "H2O", "NaCl", "Ca(OH)2" or "C6H12O6"; element symbols
            with their usual capitals, counts after them, parentheses for groups.

    Returns:
        {"formula": "H2O", "mass": 18.015, "atoms": 3}: the mass of one mole
        in grams, and the number of atoms in one formula unit.

    Raises:
        FormulaError: the formula is empty, malformed, or names an unknown element.

    """
    text = formula.strip()
    if not text:
        raise FormulaError("the formula is empty; write it like 'H2O' or 'Ca(OH)2'")
    if len(text) > _MAX_TEXT or not _FORMULA.fullmatch(text):
        raise FormulaError(
            f"cannot read the formula {text[:60]!r}: use element symbols, counts and parentheses"
        )
    try:
        parsed = periodictable.formula(text)
    except Exception as exc:  # periodictable's parser raises its own (pyparsing) errors
        raise FormulaError(f"cannot read the formula {text!r}: {_formula_hint(text)}") from exc
    atoms = parsed.atoms
    if not atoms or any(getattr(e, "number", 1) == 0 for e in atoms):
        raise FormulaError(f"the formula {text!r} names no chemical element")
    return {"formula": text, "mass": float(parsed.mass), "atoms": int(sum(atoms.values()))}


# -- calculate: a small arithmetic evaluator of its own ------------------------------

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: math.pow,  # floats: overflows at once instead of building a huge integer
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "abs": abs,
    "max": max,
    "min": min,
    "round": lambda x, n=0: round(x, int(n)),
    "sqrt": math.sqrt,
}
_HELP = "use numbers, + - * / % ** ( ) and " + ", ".join(_FUNCTIONS)


def _value(node: ast.AST) -> float:
    """The value of one node of a parsed expression; anything but arithmetic is refused."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_value(node.left), _value(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
        and node.args
    ):
        return float(_FUNCTIONS[node.func.id](*(_value(a) for a in node.args)))
    if isinstance(node, ast.Tuple):
        raise CalculationError("a comma outside a function call; write 1000000, not 1,000,000")
    if isinstance(node, ast.Name) and node.id.casefold() in _BY_NAME:
        raise CalculationError(
            f"{node.id!r} is an element, not a number; look it up with element({node.id!r}) "
            "and use its result, as in $1.mass"
        )
    raise CalculationError(f"{ast.unparse(node)[:40]!r} is not allowed; {_HELP}")


@tool(cacheable=True)
def calculate(expression: str) -> float:
    """Evaluate an arithmetic expression and return its value.

    Args:
        expression: e.g. "(55.845 + 63.546) / 2" or "max(12.011, 15.999)";
            numbers, + - * / % ** (`^` also means power), parentheses, and
            abs, max, min, round, sqrt. At most 500 characters.

    Returns:
        The value as a float.

    Raises:
        CalculationError: the expression is empty, malformed, uses anything else,
            divides by zero, or has no finite value.

    """
    text = expression.strip()
    if not text:
        raise CalculationError("the expression is empty")
    if len(text) > _MAX_EXPRESSION:
        raise CalculationError(f"the expression is longer than {_MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
        result = _value(tree.body)
    except CalculationError:
        raise
    except SyntaxError as exc:
        raise CalculationError(f"cannot parse {text!r}: {exc.msg}; {_HELP}") from exc
    except RecursionError as exc:
        raise CalculationError("the expression is nested too deeply") from exc
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise CalculationError(f"cannot evaluate {text!r}: {exc}") from exc
    if not math.isfinite(result):
        raise CalculationError(f"{text!r} has no finite value")
    return result


ELEMENT_TOOLS = (element, molar_mass, calculate)
"""Every tool of this module, in the order a planner's prompt lists them."""
