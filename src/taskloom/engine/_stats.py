"""Per-tool duration statistics, for ordering ready tasks by critical path."""

from __future__ import annotations

__all__ = ["DurationStats"]


class DurationStats:
    """An exponential moving average of each tool's call duration, in seconds.

    Share one instance between runs so later runs order their queues with
    what earlier runs observed.
    """

    def __init__(self, *, smoothing: float = 0.2, default: float = 1.0) -> None:
        """Start with no observations.

        Args:
            smoothing: weight of each new observation in the average.
            default: the estimate for a tool never observed, relative to the others.

        """
        self._smoothing = smoothing
        self._default = default
        self._mean: dict[str, float] = {}

    def observe(self, tool: str, seconds: float) -> None:
        """Fold one observed call duration into the tool's average."""
        mean = self._mean.get(tool)
        self._mean[tool] = seconds if mean is None else mean + self._smoothing * (seconds - mean)

    def observed(self, tool: str) -> float | None:
        """The tool's average duration, or None if it was never observed."""
        return self._mean.get(tool)

    def estimate(self, tool: str) -> float:
        """The expected duration of one call; never zero, so every task counts."""
        mean = self._mean.get(tool)
        if mean is None:
            known = self._mean.values()
            mean = sum(known) / len(known) if known else self._default
        return max(mean, 1e-6)
