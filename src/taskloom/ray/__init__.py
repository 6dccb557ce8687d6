"""Tool calls on a Ray cluster: `RayExecutor` (the optional extra `taskloom[ray]`).

    from taskloom.ray import RayExecutor

    with RayExecutor(address="auto") as cluster:
        result = await taskloom.execute(plan, tools=tools, executor=cluster)

The scheduler stays in this process (one event loop decides what starts
when), and so do the store, the call cache and the models; each tool call
runs on the cluster. Ray is imported when this package is.
"""

try:
    import ray as _ray  # noqa: F401  (only to say clearly what is missing)
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError("taskloom.ray needs Ray: pip install 'taskloom[ray]'") from _exc

from taskloom.ray._executor import HeldStats, RayExecutor, RayHeld

__all__ = ["HeldStats", "RayExecutor", "RayHeld"]
