import taskloom


def test_public_names_are_pinned() -> None:
    assert taskloom.__all__ == [
        "BadArguments",
        "BadOutput",
        "Budget",
        "CallPolicy",
        "ConfigError",
        "DependencyFailed",
        "DurationStats",
        "EditError",
        "ModelError",
        "Plan",
        "PlanError",
        "PlanParser",
        "Price",
        "RecordedFailure",
        "Ref",
        "Run",
        "RunError",
        "RunId",
        "RunResult",
        "RunStatus",
        "Store",
        "StoreError",
        "Task",
        "TaskCancelled",
        "TaskId",
        "TaskInterrupted",
        "TaskResult",
        "TaskStatus",
        "TaskloomError",
        "Template",
        "Tool",
        "ToolDefinitionError",
        "ToolFailed",
        "ToolTimedOut",
        "UserError",
        "execute",
        "open_run",
        "parse_stream",
        "resume",
        "tool",
    ]


def test_all_is_sorted_and_resolves() -> None:
    assert taskloom.__all__ == sorted(taskloom.__all__)
    for name in taskloom.__all__:
        assert getattr(taskloom, name) is not None
