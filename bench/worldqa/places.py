"""The places WorldQA asks about, and a check that the offline data resolves each as meant.

Only well-known places are used, and only where the GeoNames snapshot behind
`taskloom.tools.world` agrees with common knowledge: "Valencia" is left out
(its most populous match is in Venezuela), and capitals are asked about only
for countries whose capital is undisputed and resolves, as a city, to a city
of that country.
"""

from __future__ import annotations

from taskloom.tools import world

__all__ = ["CAPITAL_COUNTRIES", "CITIES", "COUNTRIES", "check_places", "display"]

COUNTRIES = (
    "Algeria", "Argentina", "Australia", "Austria", "Bangladesh", "Belgium", "Brazil",
    "Canada", "Chile", "China", "Colombia", "Cuba", "Czechia", "Denmark", "Egypt",
    "Ethiopia", "Finland", "France", "Germany", "Ghana", "Greece", "Hungary", "Iceland",
    "India", "Indonesia", "Iran", "Ireland", "Italy", "Japan", "Kenya", "Malaysia",
    "Mexico", "Morocco", "Netherlands", "New Zealand", "Nigeria", "Norway", "Pakistan",
    "Peru", "Philippines", "Poland", "Portugal", "Romania", "Russia", "Saudi Arabia",
    "South Africa", "South Korea", "Spain", "Sweden", "Switzerland", "Thailand", "Turkey",
    "Uganda", "Ukraine", "United Kingdom", "United States", "Vietnam",
)  # fmt: skip
"""Countries by the name the questions and reference plans use."""

_NO_CAPITAL_QUESTIONS = frozenset(
    # A capital that is one of several, only de facto, or named like a bigger place.
    {"Netherlands", "South Africa", "Switzerland", "United States"}
)
CAPITAL_COUNTRIES = tuple(c for c in COUNTRIES if c not in _NO_CAPITAL_QUESTIONS)
"""Countries whose capital a question may ask about or build on."""

CITIES = {
    "Paris": "France", "Lyon": "France", "Marseille": "France",
    "Berlin": "Germany", "Munich": "Germany", "Hamburg": "Germany",
    "Rome": "Italy", "Milan": "Italy", "Naples": "Italy",
    "Madrid": "Spain", "Barcelona": "Spain", "Lisbon": "Portugal",
    "London": "United Kingdom", "Manchester": "United Kingdom", "Edinburgh": "United Kingdom",
    "Dublin": "Ireland", "Amsterdam": "The Netherlands", "Brussels": "Belgium",
    "Vienna": "Austria", "Prague": "Czechia", "Warsaw": "Poland", "Budapest": "Hungary",
    "Stockholm": "Sweden", "Oslo": "Norway", "Copenhagen": "Denmark", "Helsinki": "Finland",
    "Athens": "Greece", "Istanbul": "Turkey", "Moscow": "Russia", "Kyiv": "Ukraine",
    "Cairo": "Egypt", "Lagos": "Nigeria", "Nairobi": "Kenya", "Casablanca": "Morocco",
    "Johannesburg": "South Africa", "Cape Town": "South Africa", "Addis Ababa": "Ethiopia",
    "Tokyo": "Japan", "Osaka": "Japan", "Seoul": "South Korea", "Beijing": "China",
    "Shanghai": "China", "Guangzhou": "China", "Delhi": "India", "Mumbai": "India",
    "Kolkata": "India", "Chennai": "India", "Karachi": "Pakistan", "Dhaka": "Bangladesh",
    "Bangkok": "Thailand", "Jakarta": "Indonesia", "Tehran": "Iran", "Riyadh": "Saudi Arabia",
    "Sydney": "Australia", "Melbourne": "Australia", "Auckland": "New Zealand",
    "New York": "United States", "Los Angeles": "United States", "Chicago": "United States",
    "Houston": "United States", "Toronto": "Canada", "Vancouver": "Canada",
    "Mexico City": "Mexico", "Havana": "Cuba", "Bogota": "Colombia", "Lima": "Peru",
    "Santiago": "Chile", "Buenos Aires": "Argentina", "São Paulo": "Brazil",
    "Rio de Janeiro": "Brazil",
}  # fmt: skip
"""Cities by the name the questions use, with the country GeoNames puts them in."""

_WITH_THE = frozenset({"Netherlands", "Philippines", "United Kingdom", "United States"})


def display(country: str) -> str:
    """Write a country's name as prose does: "the United States", "France".

    Returns:
        The name, with "the" in front where English puts one.

    """
    return f"the {country}" if country in _WITH_THE else country


def check_places() -> None:
    """Check that every place resolves in the offline data to the place meant.

    Raises:
        AssertionError: a country resolves under another name, a city to
            another country, a city's own GeoNames name back to another
            city, or a capital to a city outside its country.

    """
    for name in COUNTRIES:
        found = world.country.fn(name)["name"]
        if found.removeprefix("The ") != name:
            raise AssertionError(f"country {name!r} resolves to {found!r}")
    for name, country in CITIES.items():
        record = world.city.fn(name)
        if record["country"] != country:
            raise AssertionError(
                f"city {name!r} resolves to {record['name']} in {record['country']}"
            )
        # An agent may write the name a tool handed back ("New York City"): same place.
        again = world.city.fn(record["name"])
        if (again["latitude"], again["longitude"]) != (record["latitude"], record["longitude"]):
            raise AssertionError(f"city {record['name']!r} does not resolve back to {name!r}")
    for name in CAPITAL_COUNTRIES:
        facts = world.country.fn(name)
        capital = world.city.fn(facts["capital"])
        if capital["country"] != facts["name"]:
            raise AssertionError(
                f"the capital of {name}, {facts['capital']!r}, resolves to a city in "
                f"{capital['country']}"
            )
