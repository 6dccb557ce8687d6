"""Worked examples over notional tools: what the prompts show when the user gives none.

The tools here are never called; they exist to be shown. Their catalogue is
rendered like the user's (`tool_catalogue`), and each example's question
comes with it, so a model sees the form it must copy — a catalogue, a
question, numbered calls that look everything up at once and combine it
last, a decision that names the result it answers with — over names it
cannot mistake for the user's tools.
"""

from __future__ import annotations

from typing import Any

from taskloom.agent._example import Example
from taskloom.tools import Tool, tool

__all__ = ["NOTIONAL_EXAMPLES", "NOTIONAL_TOOLS"]


@tool
def weather(city: str) -> dict[str, Any]:
    """The current weather in a city: temperature in °C, wind in km/h, and a short description."""
    raise NotImplementedError  # shown to models, never called


@tool
def stock_quote(symbol: str) -> dict[str, Any]:
    """The latest price of a stock by its ticker symbol, with its currency."""
    raise NotImplementedError


@tool
def calculator(expression: str) -> float:
    """Evaluate an arithmetic expression: + - * / ** ( ), min(), max(), round()."""
    raise NotImplementedError


@tool
def user_profile(user_id: int) -> dict[str, Any]:
    """A user's account: name, email, whether it is active, and the id of their manager."""
    raise NotImplementedError


@tool
def summarize(text: str, audience: str) -> str:
    """Summarise a text in a few sentences for the given audience."""
    raise NotImplementedError


NOTIONAL_TOOLS: tuple[Tool, ...] = (weather, stock_quote, calculator, user_profile, summarize)

_WEATHER = (weather, calculator)
_STOCKS = (stock_quote, calculator)
_USERS = (user_profile, summarize)

NOTIONAL_EXAMPLES: tuple[Example, ...] = (
    Example(
        question="What is the total value of 30 shares of ACME and 12 shares of GLOBEX?",
        plan='1. stock_quote("ACME")\n2. stock_quote("GLOBEX")\n'
        '3. calculator("30 * $1.price + 12 * $2.price")',
        results={
            "1": {"symbol": "ACME", "price": 41.5, "currency": "USD"},
            "2": {"symbol": "GLOBEX", "price": 120.25, "currency": "USD"},
            "3": 2688.0,
        },
        decision="Finish($3)",
        tools=_STOCKS,
    ),
    Example(
        question="Which is warmer right now: Oslo or Lisbon?",
        plan='1. weather("Oslo")\n2. weather("Lisbon")',
        results={
            "1": {"city": "Oslo", "temp_c": 4, "wind_kmh": 18, "sky": "rain"},
            "2": {"city": "Lisbon", "temp_c": 17, "wind_kmh": 9, "sky": "sunny"},
        },
        decision="Thought: Lisbon has 17 degrees, Oslo 4.\nAction: Finish($2.city)",
        tools=_WEATHER,
    ),
    Example(
        question="Is the account of user 4172 still active?",
        plan="1. user_profile(4172)",
        results={"1": {"name": "Ada Moss", "email": "ada@example.org", "active": True}},
        decision="Finish($1.active)",
        tools=_USERS,
    ),
    Example(
        question="Who manages user 58, and what is the manager's email address?",
        plan="1. user_profile(58)",
        results={"1": {"name": "Li Wei", "active": True, "manager_id": 7}},
        decision="Thought: The manager is user 7, who has not been looked up.\n"
        "Action: Replan(look up user 7, the manager)",
        tools=_USERS,
    ),
    Example(
        question="Summarise the account of user 311 for a new colleague.",
        plan='1. user_profile(311)\n2. summarize("Account of $1.name: $1", "a new colleague")',
        results={
            "1": {"name": "Sam Ortiz", "active": False, "manager_id": 7},
            "2": "Sam Ortiz's account is closed; Sam reported to user 7.",
        },
        decision="Finish($2)",
        tools=_USERS,
    ),
)
"""Shown in this order, every time: the same text for every question, read once by a model that
keeps earlier prompts' state."""
