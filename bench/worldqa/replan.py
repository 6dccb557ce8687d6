"""Questions that need a second plan: the first results decide what to look up next.

Each question names a few places, asks which one wins a comparison, and then
asks for a fact about the winner that the first lookups do not hold (its
capital's population, its distance from somewhere) or a calculation only the
winner's figures feed. The reference plan is the first round only; the draft
also carries a second plan, built from the known winner, so the generator can
check that the answer is reachable with the tools.

Every draw has a clear winner (a margin of 5% or more over the runner-up), so
the comparison does not hinge on rounding.
"""

from __future__ import annotations

import dataclasses
import json
import random

from families import (
    Draft,
    area,
    city_facts,
    clear_pick,
    countries_text,
    country_facts,
    density,
    km,
    listing,
    pop,
    tidy,
    tool_call,
)
from places import CAPITAL_COUNTRIES, CITIES, display

__all__ = ["replans"]

_CITY_NAMES = sorted(CITIES)


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _capital_population(
    family: str, question: str, names: list[str], winner: str, which: str
) -> Draft:
    capital = country_facts(winner)["capital"]
    k = names.index(winner) + 1
    return Draft(
        question=question,
        answer=city_facts(capital)["population"],
        kind="replan",
        family=family,
        calls=tuple(tool_call("country", n) for n in names),
        second_step=f"city() of the {which} country's capital, and its population",
        second_calls=(tool_call("city", capital),),
        second_field="population",
        second_plan=(f"city(${k}.capital)",),
    )


def _capital_populations(rng: random.Random) -> list[Draft]:
    drafts = []
    for _ in range(4):
        names, winner = clear_pick(rng, CAPITAL_COUNTRIES, 2, pop)
        a, b = (display(n) for n in names)
        q = f"Which is more populous, {a} or {b}? What is the population of its capital city?"
        draft = _capital_population("capital_of_most_populous", q, names, winner, "more populous")
        one_round = (
            *draft.calls,
            "city($1.capital) if $1.population > $2.population",
            "city($2.capital) if $2.population > $1.population",
        )
        drafts.append(dataclasses.replace(draft, one_round=one_round))
    for _ in range(3):
        names, winner = clear_pick(rng, CAPITAL_COUNTRIES, 3, pop, largest=False)
        q = (
            f"Of {countries_text(names)}, which has the smallest population? "
            "What is the population of its capital city?"
        )
        drafts.append(
            _capital_population("capital_of_least_populous", q, names, winner, "least populous")
        )
    for n in (4, 5):
        names, winner = clear_pick(rng, CAPITAL_COUNTRIES, n, density)
        q = (
            f"Of {countries_text(names)}, which has the highest population density? "
            "What is the population of its capital city?"
        )
        drafts.append(_capital_population("capital_of_densest", q, names, winner, "densest"))
    return drafts


def _density_of_largest(rng: random.Random) -> list[Draft]:
    drafts = []
    for _ in range(3):
        names, winner = clear_pick(rng, CAPITAL_COUNTRIES, 3, area)
        facts = country_facts(winner)
        k = names.index(winner) + 1
        q = (
            f"Of {countries_text(names)}, which has the largest area, and what is that "
            "country's population density in people per square kilometre?"
        )
        second = tool_call("math", f"{facts['population']} / {facts['area_km2']}")
        drafts.append(
            Draft(
                question=q,
                answer=tidy(density(winner)),
                kind="replan",
                family="density_of_largest",
                calls=tuple(tool_call("country", n) for n in names),
                second_step="divide the largest country's population by its area with math()",
                second_calls=(second,),
                second_plan=(tool_call("math", f"${k}.population / ${k}.area_km2"),),
            )
        )
    return drafts


def _distances_after_choice(rng: random.Random) -> list[Draft]:
    drafts = []
    for n in (3, 4, 3):
        hub = rng.choice(_CITY_NAMES)
        pool = [x for x in _CITY_NAMES if x != hub]
        names, winner = clear_pick(rng, pool, n, lambda x: city_facts(x)["population"])
        q = (
            f"Which of the cities {listing(names)} has the most people, "
            f"and how far is it from {hub} in km?"
        )
        drafts.append(
            Draft(
                question=q,
                answer=tidy(km(winner, hub)),
                kind="replan",
                family="distance_from_largest_city",
                calls=tuple(tool_call("city", x) for x in names),
                second_step=f"distance() from the most populous city to {hub}",
                second_calls=(tool_call("distance", winner, hub),),
                second_field="km",
                second_plan=(f"distance(${names.index(winner) + 1}.name, {_quoted(hub)})",),
            )
        )
    for n in (3, 4, 4):
        hub = rng.choice(_CITY_NAMES)
        pool = [c for c in CAPITAL_COUNTRIES if c != CITIES[hub]]
        names, winner = clear_pick(rng, pool, n, area)
        capital = country_facts(winner)["capital"]
        q = (
            f"Of {countries_text(names)}, which country has the largest area? "
            f"How far, in km, is its capital from {hub}?"
        )
        drafts.append(
            Draft(
                question=q,
                answer=tidy(km(capital, hub)),
                kind="replan",
                family="capital_distance_of_largest",
                calls=tuple(tool_call("country", c) for c in names),
                second_step=f"distance() from the largest country's capital to {hub}",
                second_calls=(tool_call("distance", capital, hub),),
                second_field="km",
                second_plan=(f"distance(${names.index(winner) + 1}.capital, {_quoted(hub)})",),
            )
        )
    return drafts


def _country_of_farther_city(rng: random.Random) -> list[Draft]:
    drafts = []
    for _ in range(3):
        hub = rng.choice(_CITY_NAMES)
        pool = [x for x in _CITY_NAMES if CITIES[x] != CITIES[hub]]
        names, winner = clear_pick(rng, pool, 2, lambda x, hub=hub: km(hub, x))
        while CITIES[names[0]] == CITIES[names[1]]:  # "the country that city is in" must differ
            names, winner = clear_pick(rng, pool, 2, lambda x, hub=hub: km(hub, x))
        q = (
            f"Which is farther from {hub}: {names[0]} or {names[1]}? "
            "What is the population of the country that city is in?"
        )
        drafts.append(
            Draft(
                question=q,
                answer=pop(CITIES[winner]),
                kind="replan",
                family="country_of_farther_city",
                calls=tuple(tool_call("distance", hub, x) for x in names),
                second_step="country() of the farther city's country and report its population",
                second_calls=(tool_call("country", CITIES[winner]),),
                second_field="population",
                second_plan=(f"country(${names.index(winner) + 1}.city_b.country)",),
                one_round=(
                    *(tool_call("distance", hub, x) for x in names),
                    "country($1.city_b.country) if $1.km > $2.km",
                    "country($2.city_b.country) if $2.km > $1.km",
                ),
            )
        )
    return drafts


def replans(rng: random.Random) -> list[Draft]:
    """Draw every question that needs a second plan.

    Returns:
        The drafts, each with `second_step` and a checking `second_calls`.

    """
    return [
        *_capital_populations(rng),
        *_density_of_largest(rng),
        *_distances_after_choice(rng),
        *_country_of_farther_city(rng),
    ]
