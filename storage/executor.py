"""Executors: run a pure batch function over an Arrow table in-process or as a Ray Data stage.

Why here: synthesis (request building, parsing) and curation (per-sample filters) steps are pure functions
`fn(pa.Table) -> pa.Table` over batches. Keeping execution separate from the step (datatrove's lesson) means
scaling out is a configuration change: `--executor ray` runs the same function with
`ray.data.Dataset.map_batches` on a local Ray instance or on the cluster named by `RAY_ADDRESS`.
Steps that need a global view (deduplication, rejection sampling) stay on the driver.

The function must be picklable for Ray: a module-level function, or `functools.partial` of one.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, Literal

import pyarrow as pa

from storage.errors import ConfigError

log = logging.getLogger(__name__)

Executor = Literal["local", "ray"]
EXECUTORS = ("local", "ray")
BatchFn = Callable[[pa.Table], pa.Table]


def map_batches(table: pa.Table, fn: BatchFn, *, executor: str = "local", batch_size: int = 8192) -> pa.Table:
    """Apply `fn` to consecutive slices of `table` and concatenate the results, preserving row order."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if table.num_rows == 0:
        return fn(table)
    if executor == "local":
        return pa.concat_tables([fn(table.slice(i, batch_size)) for i in range(0, table.num_rows, batch_size)])
    return _ray_map_batches(table, fn, batch_size)


def _ray_map_batches(table: pa.Table, fn: BatchFn, batch_size: int) -> pa.Table:
    try:
        import ray
        import ray.data
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("--executor ray needs Ray: pip install 'recot[ray]'") from exc
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = dict(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                                      configure_logging=False)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=int(os.environ.get("RECOT_RAY_CPUS", os.cpu_count() or 1)), **kwargs)
        log.info("ray initialised: %s", ray.cluster_resources())  # type: ignore[no-untyped-call]
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ds = ray.data.from_arrow(table).map_batches(fn, batch_format="pyarrow", batch_size=batch_size)
    parts = ray.get(ds.to_arrow_refs())
    if not parts:
        return fn(table.slice(0, 0))
    return pa.concat_tables(parts, promote_options="default")
