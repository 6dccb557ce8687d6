"""The built-in offline toolset, against the real GeoNames and pint data."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import anyio
import pytest

from taskloom.tools import Tool, world
from taskloom.tools.world import ExpressionError, PlaceNotFound, UnitError

# ---------------------------------------------------------------- the toolset


def test_world_tools_are_cacheable_and_named_for_planners() -> None:
    assert [t.name for t in world.WORLD_TOOLS] == ["country", "city", "distance", "math", "convert"]
    for t in world.WORLD_TOOLS:
        assert t.policy.cacheable and t.policy.idempotent
        assert not t.is_async
        assert "Returns:" in t.description and "Raises:" in t.description
    assert world.city.parameters == ("name", "country")
    assert world.convert.parameters == ("value", "from_unit", "to_unit")


def test_outputs_are_json() -> None:
    outputs = [
        world.country.fn("France"),
        world.city.fn("Paris"),
        world.distance.fn("Paris", "London"),
        world.math.fn("1 + 1"),
        world.convert.fn(1, "mile", "km"),
    ]
    assert json.loads(json.dumps(outputs)) == outputs


def _call(tool: Tool, **arguments: Any) -> Any:
    return anyio.run(tool.call, tool.validate(arguments))


def test_tool_call_runs_in_a_worker_thread() -> None:
    assert _call(world.city, name="Tokyo")["country"] == "Japan"


def test_lazy_value_is_built_once_when_threads_race() -> None:
    calls: list[int] = []
    barrier = threading.Barrier(8)

    def build() -> object:
        calls.append(1)
        return object()

    lazy = world._Lazy(build)
    seen: list[object] = []

    def worker() -> None:
        barrier.wait()
        seen.append(lazy.get())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(seen) == 8 and all(s is seen[0] for s in seen)


# ---------------------------------------------------------------- country


def test_country_facts_for_france() -> None:
    assert world.country.fn("France") == {
        "name": "France",
        "iso2": "FR",
        "iso3": "FRA",
        "capital": "Paris",
        "population": 66987244,
        "area_km2": 547030,
        "continent": "Europe",
        "currency_code": "EUR",
        "currency_name": "Euro",
    }


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("USA", "United States"),
        ("united states", "United States"),
        ("  U.S.A. ", "United States"),
        ("us", "United States"),
        ("United States of America", "United States"),
        ("UK", "United Kingdom"),
        ("Britain", "United Kingdom"),
        ("GBR", "United Kingdom"),
        ("gb", "United Kingdom"),
        ("Holland", "The Netherlands"),
        ("netherlands", "The Netherlands"),
        ("Côte d'Ivoire", "Ivory Coast"),
        ("czech republic", "Czechia"),
        ("JPN", "Japan"),
        ("St. Lucia", "Saint Lucia"),
        ("Trinidad & Tobago", "Trinidad and Tobago"),
        ("ST", "Sao Tome and Principe"),
    ],
)
def test_country_lookup_is_tolerant(query: str, name: str) -> None:
    assert world.country.fn(query)["name"] == name


def test_country_without_capital_or_currency_gives_nulls() -> None:
    antarctica = world.country.fn("Antarctica")
    assert antarctica["capital"] is None
    assert antarctica["currency_code"] is None
    assert antarctica["continent"] == "Antarctica"


def test_country_continent_and_currency_names() -> None:
    japan = world.country.fn("Japan")
    assert (japan["continent"], japan["currency_code"], japan["capital"]) == (
        "Asia",
        "JPY",
        "Tokyo",
    )
    assert world.country.fn("Brazil")["continent"] == "South America"


def test_unknown_country_suggests_close_matches() -> None:
    with pytest.raises(PlaceNotFound, match="did you mean: France") as info:
        world.country.fn("Frnace")
    assert issubclass(PlaceNotFound, LookupError)
    assert info.value.suggestions[0] == "France"
    assert info.value.query == "Frnace"


def test_unknown_country_without_anything_close() -> None:
    with pytest.raises(PlaceNotFound) as info:
        world.country.fn("Qqqqqqq")
    assert info.value.suggestions == ()
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_country_is_rejected(blank: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        world.country.fn(blank)


# ---------------------------------------------------------------- city


def test_city_paris_is_the_french_one() -> None:
    paris = world.city.fn("Paris")
    assert set(paris) == {"name", "country", "country_code", "population", "latitude", "longitude"}
    assert (paris["name"], paris["country"], paris["country_code"]) == ("Paris", "France", "FR")
    assert paris["population"] > 2_000_000
    assert paris["latitude"] == pytest.approx(48.85, abs=0.05)
    assert paris["longitude"] == pytest.approx(2.35, abs=0.05)


@pytest.mark.parametrize(
    ("name", "country", "code"),
    [
        ("Paris", "US", "US"),
        ("Paris", "united states", "US"),
        ("Paris, USA", None, "US"),
        ("Paris, Texas", None, "US"),
        ("Cambridge, MA", None, "US"),
        ("Cambridge", None, "GB"),
        ("London", "Canada", "CA"),
    ],
)
def test_city_country_and_state_filters(name: str, country: str | None, code: str) -> None:
    assert world.city.fn(name, country)["country_code"] == code


def test_paris_texas_is_in_texas() -> None:
    paris = world.city.fn("Paris, Texas")
    assert paris["latitude"] == pytest.approx(33.66, abs=0.05)


@pytest.mark.parametrize(
    ("query", "name", "code"),
    [
        ("zurich", "Zürich", "CH"),
        ("SAO PAULO", "São Paulo", "BR"),
        ("  Montreal ", "Montréal", "CA"),
        ("St. Petersburg", "Saint Petersburg", "RU"),
        ("München", "Munich", "DE"),
        ("New York", "New York City", "US"),
        ("Bombay", "Mumbai", "IN"),
        ("Peking", "Beijing", "CN"),
        ("Kiev", "Kyiv", "UA"),
    ],
)
def test_city_lookup_is_tolerant(query: str, name: str, code: str) -> None:
    found = world.city.fn(query)
    assert (found["name"], found["country_code"]) == (name, code)


def test_main_name_wins_over_alternate_names() -> None:
    # "Vienne" is a town in France and also an alternate name of Vienna.
    assert world.city.fn("Vienne")["country_code"] == "FR"
    assert world.city.fn("Vienna")["country_code"] == "AT"


def test_unknown_city_suggests_close_matches() -> None:
    with pytest.raises(PlaceNotFound, match=r"did you mean: London \(United Kingdom\)") as info:
        world.city.fn("Lndon")
    assert "15,000" in str(info.value)


def test_city_not_in_the_given_country() -> None:
    with pytest.raises(PlaceNotFound, match="'Paris' in Japan"):
        world.city.fn("Paris", "Japan")


def test_city_in_an_unknown_country() -> None:
    with pytest.raises(PlaceNotFound, match="no country named 'Narnia'"):
        world.city.fn("Lyon", "Narnia")


def test_overlong_city_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="longer than"):
        world.city.fn("x" * 1000)


# ---------------------------------------------------------------- distance


def test_distance_paris_london() -> None:
    result = world.distance.fn("Paris", "London")
    assert set(result) == {"km", "miles", "city_a", "city_b"}
    assert result["km"] == pytest.approx(340, abs=10)
    assert result["miles"] == pytest.approx(result["km"] / 1.609344, abs=0.1)
    assert result["city_a"]["country"] == "France"
    assert result["city_b"]["country"] == "United Kingdom"


def test_distance_is_symmetric_and_zero_to_itself() -> None:
    there = world.distance.fn("New York", "Los Angeles")["km"]
    back = world.distance.fn("Los Angeles", "New York")["km"]
    assert there == back == pytest.approx(3940, abs=30)
    assert world.distance.fn("Tokyo", "tokyo")["km"] == 0


def test_distance_to_unknown_city_fails() -> None:
    with pytest.raises(PlaceNotFound, match="Xyzzyville"):
        world.distance.fn("Paris", "Xyzzyville")


# ---------------------------------------------------------------- math


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2 + 3 * 4", 14.0),
        ("(2 + 3) * 4", 20.0),
        ("2 ** 10", 1024.0),
        ("2^10", 1024.0),
        ("10 / 4", 2.5),
        ("7 // 2", 3.0),
        ("7 % 3", 1.0),
        ("-3 + +1", -2.0),
        ("sqrt(16) + max(1, 2, 3) - min(4, 5)", 3.0),
        ("abs(-2.5)", 2.5),
        ("round(3.14159, 2)", 3.14),
        ("log(8, 2)", 3.0),
        ("floor(2.7) + ceil(2.1)", 5.0),
        ("2 * pi", 6.283185307179586),
        ("1e3 + 1_000", 2000.0),
        ("2 ** -1", 0.5),
    ],
)
def test_math_evaluates_arithmetic(expression: str, value: float) -> None:
    result = world.math.fn(expression)
    assert isinstance(result, float)
    assert result == pytest.approx(value)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("__import__('os')", "unexpected character"),
        ("__import__", "unknown name"),
        ("open(1)", "only these functions"),
        ("().__class__", "not allowed"),
        ("(1).real", "not allowed"),
        ("x = 1", "unexpected character"),
        ("1; 2", "unexpected character"),
        ("lambda: 1", "unexpected character"),
        ("1 if 1 else 2", "not allowed"),
        ("True", "not a number"),
        ("1j", "not a number"),
        ("1,000", "comma"),
        ("sqrt", "is a function"),
        ("2**10**10", "too large"),
        ("10 ** 400", "too large"),
        ("9" * 400 + " ** 2", "too large"),
        ("1 / 0", "division by zero"),
        ("sqrt(-1)", "domain"),
        ("(-8) ** (1/3)", "domain"),
        ("min()", "cannot evaluate"),
        ("2 +", "cannot parse"),
        ("", "empty"),
        ("1 + " * 200 + "1", "longer than"),
    ],
)
def test_math_rejects_anything_else(expression: str, problem: str) -> None:
    with pytest.raises(ExpressionError, match=problem):
        world.math.fn(expression)


def test_math_survives_deep_nesting() -> None:
    try:
        assert world.math.fn("-" * 450 + "1") == 1.0
    except ExpressionError as exc:
        assert "nested" in str(exc)


# ---------------------------------------------------------------- convert


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (1, "mile", "km", 1.609344),
        (100, "degC", "degF", 212.0),
        (0, "celsius", "kelvin", 273.15),
        (60, "mph", "km/h", 96.56064),
        (1, "lb", "kg", 0.45359237),
        (1, "kWh", "J", 3_600_000.0),
        (2, "acre", "m**2", 8093.74521975),
        (1, " gallon ", "liter", 3.785411784),
    ],
)
def test_convert(value: float, source: str, target: str, expected: float) -> None:
    assert world.convert.fn(value, source, target) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("source", "target", "problem"),
    [
        ("m", "s", r"different things \(\[length\] vs \[time\]\)"),
        ("furlongz", "m", "cannot read from_unit 'furlongz'"),
        ("m", "km/", "cannot read to_unit 'km/'"),
        ("__import__('os')", "m", "cannot read from_unit"),
        ("", "m", "from_unit is empty"),
        ("m" * 200, "m", "longer than"),
    ],
)
def test_convert_rejects_bad_units(source: str, target: str, problem: str) -> None:
    with pytest.raises(UnitError, match=problem):
        world.convert.fn(1, source, target)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("(km", "cannot read from_unit '(km': its parentheses do not match"),
        ("km)", "cannot read from_unit 'km)': its parentheses do not match"),
        ("km**km", "cannot read from_unit 'km**km': malformed unit expression"),
    ],
)
def test_convert_says_what_is_wrong_with_unit_text_in_its_own_words(
    source: str, problem: str
) -> None:
    with pytest.raises(UnitError, match=re.escape(problem)) as caught:
        world.convert.fn(1, source, "m")
    assert "EOF" not in str(caught.value) and "ParserHelper" not in str(caught.value)


def test_convert_rejects_infinite_results() -> None:
    with pytest.raises(UnitError, match="not a finite number"):
        world.convert.fn(1e308, "mile", "mm")


@pytest.mark.parametrize(
    ("source", "target"),
    [("km**999999999", "m**999999999"), ("km**99999", "mm**99999"), ("mile**-99999", "km**-99999")],
)
def test_convert_between_huge_powers_of_units_is_a_unit_error(source: str, target: str) -> None:
    with pytest.raises(UnitError, match="too large|not a finite number"):
        world.convert.fn(1, source, target)


@pytest.mark.parametrize(
    ("value", "source", "target"),
    [(1, "mm**300", "km**300"), (1, "km**-999999999", "m**-999999999"), (1e-300, "nm", "Ym")],
)
def test_convert_to_a_value_too_small_for_a_float_is_a_unit_error_not_zero(
    value: float, source: str, target: str
) -> None:
    with pytest.raises(UnitError, match="too small to be written as a number"):
        world.convert.fn(value, source, target)


def test_convert_of_zero_is_zero() -> None:
    assert world.convert.fn(0, "km", "m") == 0.0


@pytest.mark.parametrize(
    ("source", "target"), [("km**99999", "m"), ("km**(1/3)", "m"), ("degC**2", "K")]
)
def test_convert_between_powers_that_do_not_match_says_so(source: str, target: str) -> None:
    with pytest.raises(UnitError, match="different things"):
        world.convert.fn(1, source, target)


@pytest.mark.parametrize(
    "expression",
    [
        "round(floor(1e308) * floor(1e308), floor(-1e308))",
        "round(5, -999999999)",
        "round(floor(1e308), -99999)",
    ],
)
def test_math_round_with_huge_digits_is_quick_and_bounded(expression: str) -> None:
    # round() of an int by -10**308 digits would build 10**(10**308): never finish.
    try:
        assert world.math.fn(expression) == 0.0
    except ExpressionError as exc:
        assert "too large" in str(exc)


@pytest.mark.parametrize(
    "expression",
    ["1 << 99999", "9**9**9", "exp(99999)", "(" + "*".join(["floor(1e308)"] * 38) + ") // 7"],
)
def test_math_shifts_and_huge_powers_are_expression_errors(expression: str) -> None:
    with pytest.raises(ExpressionError):
        world.math.fn(expression)


def test_convert_through_the_tool_schema_coerces_integers() -> None:
    assert _call(world.convert, value=3, from_unit="km", to_unit="m") == 3000.0


@pytest.mark.parametrize("expression", ["1e-400 + 1", "2 * 1e-999"])
def test_math_refuses_a_number_too_small_for_a_float_rather_than_reading_zero(
    expression: str,
) -> None:
    with pytest.raises(ExpressionError, match="is too small for a number"):
        world.math.fn(expression)


@pytest.mark.parametrize(("expression", "value"), [("0.0", 0.0), ("0e5", 0.0), ("5e-324", 5e-324)])
def test_math_reads_zero_and_the_smallest_floats(expression: str, value: float) -> None:
    assert world.math.fn(expression) == value
