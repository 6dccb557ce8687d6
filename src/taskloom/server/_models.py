"""The HTTP API's bodies: pydantic at the edge, checked before anything runs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskloom.engine import Budget, Price

__all__ = [
    "MAX_QUESTION_CHARS",
    "BudgetBody",
    "ErrorBody",
    "PriceBody",
    "RunBody",
    "RunDetail",
    "RunList",
    "RunState",
    "RunSummaryBody",
    "TaskBody",
]

MAX_QUESTION_CHARS = 100_000
"""Characters a question may have."""
_MAX_CONCURRENCY = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PriceBody(_Strict):
    """What one model's tokens cost, per million."""

    prompt: float = Field(ge=0, allow_inf_nan=False, description="Per million prompt tokens.")
    completion: float = Field(
        ge=0, allow_inf_nan=False, description="Per million completion tokens."
    )


class BudgetBody(_Strict):
    """Limits of one run; a limit left out is no limit."""

    tool_calls: int | None = Field(None, ge=0, le=2**53, description="Tool calls it may start.")
    tokens: int | None = Field(None, ge=0, le=2**53, description="LLM tokens (questions).")
    deadline: float | None = Field(
        None, ge=0, le=10**9, allow_inf_nan=False, description="Seconds until it must end."
    )
    cost: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Money for LLM calls, priced by `prices`."
    )
    prices: dict[str, PriceBody] = Field(
        default_factory=dict, description="Price per model name (needed with `cost`)."
    )

    @model_validator(mode="after")
    def _cost_needs_prices(self) -> BudgetBody:
        if self.cost is not None and not self.prices:
            raise ValueError("a cost budget needs prices for the models it pays for")
        return self

    def to_budget(self) -> Budget:
        """The engine's Budget."""
        return Budget(
            tool_calls=self.tool_calls,
            tokens=self.tokens,
            deadline=self.deadline,
            cost=self.cost,
            prices={
                name: Price(prompt=p.prompt, completion=p.completion)
                for name, p in self.prices.items()
            },
        )


class RunBody(_Strict):
    """A run to start: a question for the agent, or a plan to run as written."""

    question: str | None = Field(
        None, min_length=1, max_length=MAX_QUESTION_CHARS, description="A question to answer."
    )
    plan: str | None = Field(
        None,
        min_length=1,
        description="A plan in the plan language: one call a line, `1. tool(arguments)`.",
    )
    max_concurrency: int | None = Field(
        None, ge=1, le=_MAX_CONCURRENCY, description="Tool calls running at once."
    )
    budget: BudgetBody | None = None

    @model_validator(mode="after")
    def _one_request(self) -> RunBody:
        if (self.question is None) == (self.plan is None):
            raise ValueError('give either "question" or "plan", not both or neither')
        if self.question is not None and not self.question.strip():
            raise ValueError("the question is empty")
        return self


class RunState(BaseModel):
    """A run's id and status."""

    id: str
    status: str


class ErrorBody(BaseModel):
    """What went wrong."""

    detail: str | list[Any]


class RunSummaryBody(BaseModel):
    """One run of the list."""

    id: str
    kind: Literal["agent", "plan"]
    status: str
    request: str
    answer: str | None
    started_at: float
    finished_at: float | None


class RunList(BaseModel):
    """A page of runs, newest first; `next` is the `before` of the next page."""

    runs: list[RunSummaryBody]
    next: str | None


class TaskBody(BaseModel):
    """One task of a run."""

    id: str
    tool: str
    args: str = Field(description="The call's arguments as the plan writes them.")
    deps: list[str]
    status: str
    output: Any = None
    error: str | None
    attempts: int
    started_at: float | None
    finished_at: float | None


class RunDetail(BaseModel):
    """One run: its status, plan, tasks and answer."""

    id: str
    kind: Literal["agent", "plan"]
    status: str
    request: str
    answer: str | None
    plan: str | None
    tasks: list[TaskBody]
    started_at: float
    finished_at: float | None
