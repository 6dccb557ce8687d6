"""The agent: planner, joiner, and the compile-run-join loop."""
