"""The question families of ElementQA: templates that draw elements and compute their answers.

Every family takes the shared seeded RNG and returns `Draft`s. Facts come from
the ElementQA tools' own functions (`element.fn("iron")["mass"]`); only the
arithmetic on them is done here, in plain Python, so that running the
reference plan (arithmetic by the `calculate` tool) is an independent check
of each answer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import periodictable

from elementqa.tools import element, molar_mass

__all__ = [
    "COMPOUNDS",
    "ELEMENTS",
    "FAMILIES",
    "METALS",
    "Draft",
    "Family",
    "Pick",
    "aggregates",
    "comparisons",
    "compounds",
    "lookups",
]

METALS = (
    "iron copper gold silver lead zinc tin nickel platinum tungsten titanium aluminium "
    "cobalt chromium magnesium"
).split()
"""Solids at room temperature, whose densities mean what a reader expects."""
ELEMENTS = (
    *METALS,
    *(
        "hydrogen helium lithium carbon nitrogen oxygen fluorine neon sodium silicon "
        "phosphorus sulfur chlorine argon potassium calcium bromine iodine xenon mercury "
        "uranium krypton arsenic"
    ).split(),
)
"""Elements a question may name, by their everyday English names."""
COMPOUNDS = {
    "H2O": "water",
    "CO2": "carbon dioxide",
    "NaCl": "table salt",
    "C6H12O6": "glucose",
    "H2SO4": "sulfuric acid",
    "CH4": "methane",
    "NH3": "ammonia",
    "CaCO3": "calcium carbonate",
    "C2H6O": "ethanol",
    "Fe2O3": "iron oxide",
    "NaHCO3": "baking soda",
    "C12H22O11": "sucrose",
}
"""Compounds a question may name, by formula: their everyday names."""
_LOOKUP_TOOLS = frozenset({"element", "molar_mass"})


@dataclass(frozen=True, kw_only=True)
class Pick:
    """How a name answer follows from the results: the field of the output best by a key."""

    by: str
    """The field compared, such as "mass"."""
    largest: bool
    """True: the output with the largest value wins; False: the smallest."""
    field: str = "name"
    """The winner's field that is the answer."""


@dataclass(frozen=True, kw_only=True)
class Draft:
    """One question, before it is numbered."""

    question: str
    """The question as the agent reads it."""
    answer: float | str
    """The ground truth, computed from the tools' functions."""
    kind: str
    """"lookup", "aggregate", "derived" or "compare"."""
    family: str
    """The template it came from, such as "sum_mass"."""
    calls: tuple[str, ...]
    """The reference plan's tool calls in order, unnumbered and without `join()`."""
    answer_field: str | None = None
    """The field of the last call's output that holds the answer; None for the whole output."""
    pick: Pick | None = None
    """Compare questions: how the answer follows from all the lookups' outputs."""

    @property
    def width(self) -> int:
        """The number of independent lookups in the plan."""
        return sum(call.split("(", 1)[0] in _LOOKUP_TOOLS for call in self.calls)


Family = Callable[[random.Random], list[Draft]]
"""A question template: draws its questions with the shared RNG."""


# -- helpers -----------------------------------------------------------------------


def call(tool: str, *args: str) -> str:
    return f"{tool}({', '.join(json.dumps(a) for a in args)})"


def calc(expression: str) -> str:
    return call("calculate", expression)


def refs(field: str, count: int, start: int = 1) -> list[str]:
    return [f"${i}.{field}" for i in range(start, start + count)]


def listing(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def tidy(value: float) -> float:
    """Round a computed answer to six significant digits (the scorer is tolerant anyway)."""
    if float(value).is_integer():
        return int(value)
    return float(f"{value:.6g}")


def fact(name: str, field: str) -> Any:
    return element.fn(name)[field]


def mass(name: str) -> float:
    return float(fact(name, "mass"))


def density(name: str) -> float:
    return float(fact(name, "density"))


def compound_mass(formula: str) -> float:
    return float(molar_mass.fn(formula)["mass"])


def atoms_of(formula: str, name: str) -> int:
    """How many atoms of the element `name` one formula unit of `formula` holds."""
    symbol = fact(name, "symbol")
    counts = {str(e): int(n) for e, n in periodictable.formula(formula).atoms.items()}
    return counts.get(symbol, 0)


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

    Raises:
        AssertionError: no draw in a thousand has a clear winner.

    """
    for _ in range(1000):
        names = rng.sample(list(pool), k)
        ranked = sorted(names, key=key, reverse=largest)
        first, second = key(ranked[0]), key(ranked[1])
        if abs(first - second) >= margin * abs(second):
            return names, ranked[0]
    raise AssertionError(f"no draw of {k} from {len(pool)} has a clear winner")


def _compound_text(formula: str) -> str:
    return f"{COMPOUNDS[formula]} ({formula})"


# -- families ----------------------------------------------------------------------


def lookups(rng: random.Random) -> list[Draft]:
    def one(family: str, question: str, answer: Any, tool_call: str, field: str) -> Draft:
        return Draft(
            question=question,
            answer=answer if isinstance(answer, str) else tidy(answer),
            kind="lookup",
            family=family,
            calls=(tool_call,),
            answer_field=field,
        )

    drafts = []
    for x in rng.sample(ELEMENTS, 4):
        q = f"What is the atomic mass of {x}?"
        drafts.append(one("atomic_mass", q, mass(x), call("element", x), "mass"))
    for x in rng.sample(ELEMENTS, 3):
        q = f"What is the atomic number of {x}?"
        drafts.append(one("atomic_number", q, fact(x, "number"), call("element", x), "number"))
    for x in rng.sample(ELEMENTS, 3):
        q = f"What is the chemical symbol of {x}?"
        drafts.append(one("symbol", q, fact(x, "symbol"), call("element", x), "symbol"))
    for x in rng.sample(ELEMENTS, 3):
        symbol = fact(x, "symbol")
        q = f"Which element has the chemical symbol {symbol}?"
        drafts.append(one("name_of_symbol", q, fact(x, "name"), call("element", symbol), "name"))
    for x in rng.sample(METALS, 3):
        q = f"What is the density of {x} in grams per cubic centimetre?"
        drafts.append(one("density", q, density(x), call("element", x), "density"))
    for f in rng.sample(sorted(COMPOUNDS), 3):
        q = f"What is the molar mass of {_compound_text(f)} in grams per mole?"
        drafts.append(one("molar_mass", q, compound_mass(f), call("molar_mass", f), "mass"))
    return drafts


def _combine(family: str, question: str, answer: float, calls: Sequence[str]) -> Draft:
    return Draft(
        question=question, answer=tidy(answer), kind="aggregate", family=family, calls=tuple(calls)
    )


def _elements_then(names: Sequence[str], expression: str) -> list[str]:
    return [*(call("element", x) for x in names), calc(expression)]


def aggregates(rng: random.Random) -> list[Draft]:
    drafts = []
    for n in (2, 3, 4, 5, 6):
        names = rng.sample(ELEMENTS, n)
        q = f"What is the sum of the atomic masses of {listing(names)}?"
        expr = " + ".join(refs("mass", n))
        drafts.append(_combine("sum_mass", q, sum(map(mass, names)), _elements_then(names, expr)))
    for n in (3, 4, 5, 6):
        names = rng.sample(ELEMENTS, n)
        q = f"What is the average atomic mass of {listing(names)}?"
        expr = f"({' + '.join(refs('mass', n))}) / {n}"
        answer = sum(map(mass, names)) / n
        drafts.append(_combine("mean_mass", q, answer, _elements_then(names, expr)))
    for n in (3, 5):
        names = rng.sample(ELEMENTS, n)
        q = f"What is the largest atomic mass among {listing(names)}?"
        expr = f"max({', '.join(refs('mass', n))})"
        answer = max(map(mass, names))
        drafts.append(_combine("max_mass", q, answer, _elements_then(names, expr)))
    for n in (4, 6):
        names = rng.sample(ELEMENTS, n)
        q = f"What is the sum of the atomic numbers of {listing(names)}?"
        expr = " + ".join(refs("number", n))
        answer = sum(fact(x, "number") for x in names)
        drafts.append(_combine("sum_number", q, answer, _elements_then(names, expr)))
    for n in (3, 4):
        names = rng.sample(METALS, n)
        q = f"What is the average density of {listing(names)}, in g/cm3?"
        expr = f"({' + '.join(refs('density', n))}) / {n}"
        answer = sum(map(density, names)) / n
        drafts.append(_combine("mean_density", q, answer, _elements_then(names, expr)))
    for _ in range(3):
        names, big = clear_pick(rng, ELEMENTS, 2, mass, margin=0.1)
        small = next(x for x in names if x != big)
        q = f"How much greater is the atomic mass of {big} than that of {small}?"
        answer = mass(big) - mass(small)
        drafts.append(
            _combine(
                "mass_difference", q, answer, _elements_then([big, small], "$1.mass - $2.mass")
            )
        )
    for _ in range(2):
        names, big = clear_pick(rng, METALS, 2, density, margin=0.1)
        small = next(x for x in names if x != big)
        q = f"By how many g/cm3 is {big} denser than {small}?"
        answer = density(big) - density(small)
        expr = "$1.density - $2.density"
        drafts.append(_combine("density_difference", q, answer, _elements_then([big, small], expr)))
    for _ in range(2):
        names, big = clear_pick(rng, ELEMENTS, 2, mass, margin=0.3)
        small = next(x for x in names if x != big)
        q = f"How many times heavier is an atom of {big} than an atom of {small}?"
        answer = mass(big) / mass(small)
        drafts.append(
            _combine("mass_ratio", q, answer, _elements_then([big, small], "$1.mass / $2.mass"))
        )
    return drafts


def compounds(rng: random.Random) -> list[Draft]:
    drafts = []
    pool = sorted(COMPOUNDS)
    for n in (2, 3):
        formulas = rng.sample(pool, n)
        q = f"What is the combined molar mass of {listing([_compound_text(f) for f in formulas])}?"
        calls = [*(call("molar_mass", f) for f in formulas), calc(" + ".join(refs("mass", n)))]
        answer = sum(map(compound_mass, formulas))
        drafts.append(_combine("sum_molar_mass", q, answer, calls))
    for _ in range(2):
        formulas, big = clear_pick(rng, pool, 2, compound_mass, margin=0.1)
        small = next(f for f in formulas if f != big)
        q = (
            f"How many grams per mole heavier is {_compound_text(big)} than "
            f"{_compound_text(small)}?"
        )
        calls = [call("molar_mass", big), call("molar_mass", small), calc("$1.mass - $2.mass")]
        answer = compound_mass(big) - compound_mass(small)
        drafts.append(_combine("molar_mass_difference", q, answer, calls))
    for formula, moles in zip(rng.sample(pool, 2), (2.5, 4), strict=True):
        q = f"What is the mass, in grams, of {moles} moles of {_compound_text(formula)}?"
        calls = [call("molar_mass", formula), calc(f"{moles} * $1.mass")]
        drafts.append(
            Draft(
                question=q,
                answer=tidy(moles * compound_mass(formula)),
                kind="derived",
                family="moles_to_grams",
                calls=tuple(calls),
            )
        )
    fractions = [
        (f, x)
        for f in pool
        for x in ELEMENTS
        if atoms_of(f, x) and len(periodictable.formula(f).atoms) > 1
    ]
    for formula, name in rng.sample(fractions, 3):
        count = atoms_of(formula, name)
        q = f"What percentage of the mass of {_compound_text(formula)} is {name}?"
        share = f"{count} * $2.mass" if count > 1 else "$2.mass"
        calls = [
            call("molar_mass", formula),
            call("element", name),
            calc(f"100 * {share} / $1.mass"),
        ]
        answer = 100 * count * mass(name) / compound_mass(formula)
        drafts.append(
            Draft(
                question=q,
                answer=tidy(answer),
                kind="derived",
                family="mass_percent",
                calls=tuple(calls),
            )
        )
    return drafts


def comparisons(rng: random.Random) -> list[Draft]:
    def one(family: str, question: str, names: Sequence[str], winner: str, pick: Pick) -> Draft:
        return Draft(
            question=question,
            answer=fact(winner, "name"),
            kind="compare",
            family=family,
            calls=tuple(call("element", x) for x in names),
            pick=pick,
        )

    drafts = []
    for n in (3, 4, 5, 6):
        names, winner = clear_pick(rng, ELEMENTS, n, mass)
        q = f"Which of {listing(names)} has the largest atomic mass?"
        drafts.append(one("heaviest", q, names, winner, Pick(by="mass", largest=True)))
    for n in (3, 4):
        names, winner = clear_pick(rng, ELEMENTS, n, mass, largest=False)
        q = f"Which of {listing(names)} has the smallest atomic mass?"
        drafts.append(one("lightest", q, names, winner, Pick(by="mass", largest=False)))
    for n in (3, 5):
        names, winner = clear_pick(rng, METALS, n, density)
        q = f"Which is the densest of {listing(names)}?"
        drafts.append(one("densest", q, names, winner, Pick(by="density", largest=True)))
    return drafts


FAMILIES: tuple[Family, ...] = (lookups, aggregates, compounds, comparisons)
"""Every family, in the order they draw from the RNG."""
