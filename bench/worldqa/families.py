"""The question families of WorldQA: templates that draw places and compute their answers.

Every family takes the shared seeded RNG and returns `Draft`s. Facts come from
the world tools' own functions (`world.country.fn("France")["population"]`);
only the arithmetic on them is done here, in plain Python, so that running the
reference plan (arithmetic by the `math` and `convert` tools) is an
independent check of each answer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from places import CAPITAL_COUNTRIES, CITIES, COUNTRIES, display

from taskloom.tools import world

__all__ = [
    "KM_PER_MILE",
    "Draft",
    "Family",
    "aggregates",
    "area",
    "city_facts",
    "clear_pick",
    "countries_text",
    "country_facts",
    "density",
    "derived_distances",
    "derived_facts",
    "km",
    "listing",
    "lookups",
    "plus",
    "pop",
    "refs",
    "tidy",
    "tool_call",
]

KM_PER_MILE = 1.609344
_LOOKUP_TOOLS = frozenset({"country", "city", "distance"})
_CITY_NAMES = sorted(CITIES)


@dataclass(frozen=True, kw_only=True)
class Draft:
    """One question, before it is numbered."""

    question: str
    """The question as the agent reads it."""
    answer: float | str
    """The ground truth, computed from the world tools."""
    kind: str
    """"lookup", "aggregate", "derived" or "replan"."""
    family: str
    """The template it came from, such as "sum_population"."""
    calls: tuple[str, ...]
    """The reference plan's tool calls in order, unnumbered and without `join()`."""
    answer_field: str | None = None
    """The field of the last call's output that holds the answer; None for the whole output."""
    second_step: str | None = None
    """Replan questions only: what the second plan must do, in words."""
    second_calls: tuple[str, ...] = ()
    """Replan questions only: a second plan that finishes the job, to check the answer."""
    second_field: str | None = None
    """The field of the second plan's last output that holds the answer."""
    one_round: tuple[str, ...] = ()
    """Replan questions that conditions can answer in one plan: that plan's calls
    (the first calls, then one conditional call per candidate; the scheduler
    compares). The answer is `second_field` of the call that ran."""
    second_plan: tuple[str, ...] = ()
    """Replan questions only: the second plan as a planner writes it, taking the
    winner from the first results by reference (`city($2.capital)`)."""

    @property
    def width(self) -> int:
        """The number of independent lookups in the (first) plan."""
        return sum(call.split("(", 1)[0] in _LOOKUP_TOOLS for call in self.calls)


Family = Callable[[random.Random], list[Draft]]
"""A question template: draws its questions with the shared RNG."""


def tool_call(tool: str, *args: str) -> str:
    return f"{tool}({', '.join(json.dumps(a, ensure_ascii=False) for a in args)})"


def refs(field: str, count: int, start: int = 1) -> list[str]:
    return [f"${i}.{field}" for i in range(start, start + count)]


def plus(terms: Sequence[str]) -> str:
    return " + ".join(terms)


def listing(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def countries_text(names: Sequence[str]) -> str:
    return listing([display(n) for n in names])


def tidy(value: float) -> float:
    """Round a computed answer to what the question needs (the scorer is tolerant anyway)."""
    if float(value).is_integer():
        return int(value)
    return round(value) if abs(value) >= 10_000 else float(f"{value:.6g}")


def country_facts(name: str) -> dict[str, Any]:
    return world.country.fn(name)


def city_facts(name: str) -> dict[str, Any]:
    return world.city.fn(name)


def km(a: str, b: str) -> float:
    return float(world.distance.fn(a, b)["km"])


def pop(name: str) -> int:
    return int(country_facts(name)["population"])


def area(name: str) -> float:
    return float(country_facts(name)["area_km2"])


def density(name: str) -> float:
    return pop(name) / area(name)


def clear_pick(
    rng: random.Random,
    pool: Sequence[str],
    k: int,
    key: Callable[[str], float],
    *,
    largest: bool = True,
    margin: float = 0.05,
) -> tuple[list[str], str]:
    """Draw k names whose best by `key` beats the runner-up by `margin`, so no tie is close.

    Returns:
        The names in drawn order, and the best of them.

    """
    for _ in range(1000):
        names = rng.sample(list(pool), k)
        ranked = sorted(names, key=key, reverse=largest)
        first, second = key(ranked[0]), key(ranked[1])
        if abs(first - second) >= margin * abs(second):
            return names, ranked[0]
    raise AssertionError(f"no draw of {k} from {len(pool)} has a clear winner")


def lookups(rng: random.Random) -> list[Draft]:
    def one(family: str, question: str, answer: Any, call: str, field: str) -> Draft:
        return Draft(
            question=question,
            answer=answer if isinstance(answer, str) else tidy(answer),
            kind="lookup",
            family=family,
            calls=(call,),
            answer_field=field,
        )

    drafts = []
    for c in rng.sample(COUNTRIES, 8):
        q = f"What is the population of {display(c)}?"
        drafts.append(one("country_population", q, pop(c), tool_call("country", c), "population"))
    for c in rng.sample(COUNTRIES, 5):
        q = f"What is the area of {display(c)} in square kilometres?"
        drafts.append(one("country_area", q, area(c), tool_call("country", c), "area_km2"))
    for c in rng.sample(CAPITAL_COUNTRIES, 6):
        q = f"What is the capital of {display(c)}?"
        drafts.append(
            one("capital", q, country_facts(c)["capital"], tool_call("country", c), "capital")
        )
    for x in rng.sample(_CITY_NAMES, 6):
        q = f"How many people live in the city of {x}?"
        drafts.append(
            one(
                "city_population",
                q,
                city_facts(x)["population"],
                tool_call("city", x),
                "population",
            )
        )
    for x in rng.sample(_CITY_NAMES, 3):
        q = f"In which country is the city of {x}?"
        drafts.append(
            one("city_country", q, city_facts(x)["country"], tool_call("city", x), "country")
        )
    for c in rng.sample(COUNTRIES, 3):
        q = f"What is the ISO 4217 code of the currency of {display(c)}?"
        code = country_facts(c)["currency_code"]
        drafts.append(one("currency_code", q, code, tool_call("country", c), "currency_code"))
    return drafts


def _combine(
    family: str, question: str, answer: float, tool: str, names: Sequence[str], expression: str
) -> Draft:
    calls = (*(tool_call(tool, n) for n in names), tool_call("math", expression))
    return Draft(
        question=question, answer=tidy(answer), kind="aggregate", family=family, calls=calls
    )


def aggregates(rng: random.Random) -> list[Draft]:
    drafts = []
    phrasings = (
        "What is the combined population of {}?",
        "How many people live in {} altogether?",
        "What is the total population of {}?",
    )
    for n in (2, 3, 4, 5, 6, 7, 8, 3, 4, 5, 6, 7, 8):
        names = rng.sample(COUNTRIES, n)
        q = rng.choice(phrasings).format(countries_text(names))
        total = sum(map(pop, names))
        expr = plus(refs("population", n))
        drafts.append(_combine("sum_population", q, total, "country", names, expr))
    for n in (2, 3, 4, 5, 6, 8):
        names = rng.sample(COUNTRIES, n)
        q = f"What is the total area, in square kilometres, of {countries_text(names)}?"
        expr = plus(refs("area_km2", n))
        drafts.append(_combine("sum_area", q, sum(map(area, names)), "country", names, expr))
    for n in (3, 4, 5, 6, 8):
        names = rng.sample(_CITY_NAMES, n)
        q = f"What is the average population of the cities {listing(names)}?"
        mean = sum(city_facts(x)["population"] for x in names) / n
        expr = f"({plus(refs('population', n))}) / {n}"
        drafts.append(_combine("mean_city_population", q, mean, "city", names, expr))
    for n in (2, 4, 7):
        names = rng.sample(_CITY_NAMES, n)
        q = f"What is the combined population of the cities {listing(names)}?"
        total = sum(city_facts(x)["population"] for x in names)
        expr = plus(refs("population", n))
        drafts.append(_combine("sum_city_population", q, total, "city", names, expr))
    for _ in range(4):
        names, big = clear_pick(rng, COUNTRIES, 2, pop, margin=0.1)
        small = next(n for n in names if n != big)
        q = f"How many more people live in {display(big)} than in {display(small)}?"
        expr = "$1.population - $2.population"
        drafts.append(
            _combine("difference", q, pop(big) - pop(small), "country", [big, small], expr)
        )
    for n in (4, 5, 7):
        names = rng.sample(COUNTRIES, n)
        q = f"What is the population of the most populous of {countries_text(names)}?"
        expr = f"max({', '.join(refs('population', n))})"
        drafts.append(_combine("max_population", q, max(map(pop, names)), "country", names, expr))
    for n in (4, 6):
        names = rng.sample(COUNTRIES, n)
        q = f"What is the area, in square kilometres, of the smallest of {countries_text(names)}?"
        expr = f"min({', '.join(refs('area_km2', n))})"
        drafts.append(_combine("min_area", q, min(map(area, names)), "country", names, expr))
    return drafts


def _derive(family: str, question: str, answer: float, *calls: str) -> Draft:
    return Draft(question=question, answer=tidy(answer), kind="derived", family=family, calls=calls)


def _route_calls(stops: Sequence[str]) -> list[str]:
    return [tool_call("distance", a, b) for a, b in zip(stops, stops[1:], strict=False)]


def derived_facts(rng: random.Random) -> list[Draft]:
    drafts = []
    for c in rng.sample(COUNTRIES, 3):
        q = f"What is the area of {display(c)} in square miles?"
        to_sq_miles = 'convert($1.area_km2, "km**2", "mile**2")'
        drafts.append(
            _derive(
                "area_sq_miles", q, area(c) / KM_PER_MILE**2, tool_call("country", c), to_sq_miles
            )
        )
    for c in rng.sample(COUNTRIES, 5):
        q = f"What is the population density of {display(c)}, in people per square kilometre?"
        expr = tool_call("math", "$1.population / $1.area_km2")
        drafts.append(_derive("density", q, density(c), tool_call("country", c), expr))
    for n in (2, 3, 4):
        names = rng.sample(COUNTRIES, n)
        q = f"What is the population density of {countries_text(names)} taken together, per km2?"
        answer = sum(map(pop, names)) / sum(map(area, names))
        expr = f"({plus(refs('population', n))}) / ({plus(refs('area_km2', n))})"
        drafts.append(
            _derive(
                "combined_density",
                q,
                answer,
                *(tool_call("country", c) for c in names),
                tool_call("math", expr),
            )
        )
    for _ in range(4):
        names, big = clear_pick(rng, COUNTRIES, 2, pop, margin=0.2)
        small = next(n for n in names if n != big)
        q = f"How many times as many people live in {display(big)} as in {display(small)}?"
        expr = tool_call("math", "$1.population / $2.population")
        drafts.append(
            _derive(
                "ratio",
                q,
                pop(big) / pop(small),
                tool_call("country", big),
                tool_call("country", small),
                expr,
            )
        )
    in_countries = [x for x in _CITY_NAMES if CITIES[x] in COUNTRIES]
    for x in rng.sample(in_countries, 4):
        c = CITIES[x]
        q = f"What percentage of the population of {display(c)} lives in the city of {x}?"
        expr = tool_call("math", "100 * $1.population / $2.population")
        answer = 100 * city_facts(x)["population"] / pop(c)
        drafts.append(
            _derive(
                "city_share_percent", q, answer, tool_call("city", x), tool_call("country", c), expr
            )
        )
    for _ in range(2):
        names = rng.sample(COUNTRIES, 3)
        first = display(names[0])
        q = f"What percentage of the combined area of {countries_text(names)} lies in {first}?"
        expr = tool_call("math", f"100 * $1.area_km2 / ({plus(refs('area_km2', 3))})")
        answer = 100 * area(names[0]) / sum(map(area, names))
        drafts.append(
            _derive(
                "area_share_percent", q, answer, *(tool_call("country", c) for c in names), expr
            )
        )
    return drafts


def derived_distances(rng: random.Random) -> list[Draft]:
    drafts = []
    for _ in range(5):
        a, b = rng.sample(_CITY_NAMES, 2)
        q = f"What is the straight-line distance between {a} and {b} in miles?"
        calls = (tool_call("distance", a, b), 'convert($1.km, "km", "mile")')
        drafts.append(_derive("distance_miles", q, km(a, b) / KM_PER_MILE, *calls))
    for legs, unit in ((2, "km"), (3, "miles"), (4, "km"), (5, "km"), (3, "km"), (4, "miles")):
        stops = rng.sample(_CITY_NAMES, legs + 1)
        calls = [*_route_calls(stops), tool_call("math", plus(refs("km", legs)))]
        total = sum(km(a, b) for a, b in zip(stops, stops[1:], strict=False))
        words = "kilometres" if unit == "km" else "miles"
        path = " to ".join(stops)
        q = f"Flying in straight lines from {path}, how many {words} is the whole trip?"
        if unit == "miles":
            calls.append(f'convert(${legs + 1}, "km", "mile")')
            total /= KM_PER_MILE
        drafts.append(_derive(f"route_{unit}", q, total, *calls))
    for n in (4, 5, 6):
        hub, *others = rng.sample(_CITY_NAMES, n + 1)
        q = f"What is the average straight-line distance in km from {hub} to {listing(others)}?"
        calls = [tool_call("distance", hub, x) for x in others]
        mean = sum(km(hub, x) for x in others) / n
        expr = tool_call("math", f"({plus(refs('km', n))}) / {n}")
        drafts.append(_derive("mean_distance", q, mean, *calls, expr))
    for _ in range(2):
        hub = rng.choice(_CITY_NAMES)
        pool = [x for x in _CITY_NAMES if x != hub]
        (a, b), far = clear_pick(rng, pool, 2, lambda x, hub=hub: km(hub, x), margin=0.1)
        near = b if far == a else a
        q = f"How many kilometres farther from {hub} is {far} than {near}?"
        calls = (tool_call("distance", hub, far), tool_call("distance", hub, near))
        expr = tool_call("math", "$1.km - $2.km")
        drafts.append(_derive("distance_difference", q, km(hub, far) - km(hub, near), *calls, expr))
    return drafts
