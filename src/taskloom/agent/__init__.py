"""The agent: a planner that streams a plan, the scheduler that runs it, a joiner that answers."""

from taskloom.agent._agent import Agent, uses_grammar
from taskloom.agent._decision import Decision, Finish, Replan, parse_decision
from taskloom.agent._result import AgentResult, LLMCall, PlanAttempt, Timings

__all__ = [
    "Agent",
    "AgentResult",
    "Decision",
    "Finish",
    "LLMCall",
    "PlanAttempt",
    "Replan",
    "Timings",
    "parse_decision",
    "uses_grammar",
]
