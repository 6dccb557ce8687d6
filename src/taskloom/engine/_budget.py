"""Budgets: how much a run may spend before it stops starting new work."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from taskloom.errors import UserError

__all__ = ["Budget", "Price"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Price:
    """What one model charges, in money per million tokens."""

    prompt: float
    """Price of a million prompt tokens."""
    completion: float
    """Price of a million completion tokens."""

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The cost of one call with these token counts."""
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1e6


@dataclass(frozen=True, kw_only=True, slots=True)
class Budget:
    """Limits for one run; None means no limit.

    When one runs out, nothing new is dispatched, running tasks are cancelled
    and the run ends with status `budget_exceeded`, naming the budget.
    """

    tool_calls: int | None = None
    """Tool calls the run may start."""
    deadline: float | None = None
    """Seconds from the run's start until it must end. A task whose expected
    duration (from earlier calls of its tool) would cross it is not started."""
    tokens: int | None = None
    """LLM tokens, prompt and completion together (agent runs)."""
    cost: float | None = None
    """Money spent on LLM calls, priced by `prices` (agent runs)."""
    prices: Mapping[str, Price] = field(default_factory=dict)
    """Price per model name; a model not listed costs nothing."""

    def __post_init__(self) -> None:
        for name in ("tool_calls", "deadline", "tokens", "cost"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UserError(f"budget {name} must not be negative, got {value}")
        if self.cost is not None and not self.prices:
            raise UserError("a cost budget needs prices for the models it pays for")

    def price(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """The cost of one LLM call under this budget's price table."""
        price = self.prices.get(model)
        return 0.0 if price is None else price.cost(prompt_tokens, completion_tokens)
