r"""Test doubles for code that uses taskloom: chat models that need no model, an executor.

model = ScriptedModel(['1. country("France")\n2. join()', "Action: Finish(67 million)"])
result = await taskloom.Agent(tools=WORLD_TOOLS, model=model).run("Population of France?")
"""

from taskloom.engine._testing import HoldingExecutor, RecordingExecutor
from taskloom.llm._testing import FunctionModel, ModelFunction, ScriptedModel

__all__ = [
    "FunctionModel",
    "HoldingExecutor",
    "ModelFunction",
    "RecordingExecutor",
    "ScriptedModel",
]
