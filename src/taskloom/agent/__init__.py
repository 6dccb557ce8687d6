"""The agent: a planner that streams a plan, the scheduler that runs it, a joiner that answers."""

from taskloom.agent._agent import Agent, default_replans, uses_grammar
from taskloom.agent._decision import Decision, Finish, Replan, parse_decision
from taskloom.agent._example import Example, load_examples
from taskloom.agent._limits import GrammarLimits
from taskloom.agent._result import AgentResult, LLMCall, PlanAttempt, Timings
from taskloom.agent.batch import BatchItem, BatchRequest, read_requests, run_batch

__all__ = [
    "Agent",
    "AgentResult",
    "BatchItem",
    "BatchRequest",
    "Decision",
    "Example",
    "Finish",
    "GrammarLimits",
    "LLMCall",
    "PlanAttempt",
    "Replan",
    "Timings",
    "default_replans",
    "load_examples",
    "parse_decision",
    "read_requests",
    "run_batch",
    "uses_grammar",
]
