"""Executors: run a pure batch function over an Arrow table in-process or as a Ray Data stage.

Why here: synthesis (request building, parsing) and curation (per-sample filters) steps are pure functions
`fn(pa.Table) -> pa.Table` over batches. Keeping execution separate from the step (datatrove's lesson) means
scaling out is a configuration change: `--executor ray` runs the same function with
`ray.data.Dataset.map_batches` on a local Ray instance or on the cluster named by `RAY_ADDRESS`.
Steps that need a global view split it by key instead: `map_partitions` runs one task per partition (exact
dedup partitions rows by text hash, near dedup its LSH buckets by band key, so no group straddles two
partitions and the result equals the in-process run); rejection sampling and the judge stay on the driver.

The function must be picklable for Ray: a module-level function, or `functools.partial` of one.

A local Ray instance (no `RAY_ADDRESS`) listens on 127.0.0.1 only: Ray's control ports run code for whoever
connects, so they must not be reachable from the network (see `_loopback_only`).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import pyarrow as pa

from storage.errors import ConfigError

log = logging.getLogger(__name__)

Executor = Literal["local", "ray"]
EXECUTORS = ("local", "ray")
BatchFn = Callable[[pa.Table], pa.Table]
LOOPBACK = "127.0.0.1"


def map_batches(table: pa.Table, fn: BatchFn, *, executor: str = "local", batch_size: int = 8192) -> pa.Table:
    """Apply `fn` to consecutive slices of `table` and concatenate the results, preserving row order."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if table.num_rows == 0:
        return fn(table)
    if executor == "local":
        return pa.concat_tables([fn(table.slice(i, batch_size)) for i in range(0, table.num_rows, batch_size)])
    return _ray_map_batches(table, fn, batch_size)


@contextmanager
def _loopback_only() -> Iterator[None]:
    """While a local Ray instance starts, make 127.0.0.1 its node address.

    Why a patch: `ray.init(_node_ip_address="127.0.0.1")` alone is not enough — Ray (checked with 2.60) turns a
    loopback address into the machine's external one (`ray._private.services.resolve_ip_for_localhost`), and
    its gRPC servers (gcs_server, raylet, workers) then listen on every interface (`::`), the runtime-env agent
    on the external address. Handed 127.0.0.1 as the node address, every one of them listens on loopback only.
    tests/reliability/test_reliability_sockets.py fails if a Ray process listens anywhere else."""
    from ray._private import services

    resolve, node_ip = services.resolve_ip_for_localhost, services.get_node_ip_address

    def keep_loopback(host: str) -> str:
        return LOOPBACK if host in ("localhost", LOOPBACK, "::1") else str(resolve(host))

    services.resolve_ip_for_localhost = keep_loopback
    services.get_node_ip_address = lambda address=None: LOOPBACK
    try:
        yield
    finally:
        services.resolve_ip_for_localhost, services.get_node_ip_address = resolve, node_ip


def map_partitions(fn: Callable[[Any], Any], parts: Sequence[Any], *, executor: str = "local") -> list[Any]:
    """`fn` over each partition of a set-level step, in-process or as one Ray task per partition (spread over
    the cluster's workers); results in partition order. `fn` must be picklable (module level)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "local" or not parts:
        return [fn(p) for p in parts]
    ray = _ensure_ray()
    task = ray.remote(_call)  # ray.remote takes functions, not partials: ship fn as an argument
    fn_ref = ray.put(fn)
    return list(ray.get([task.remote(fn_ref, p) for p in parts]))


def _call(fn: Callable[[Any], Any], part: Any) -> Any:
    return fn(part)


def _ensure_ray() -> Any:
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
            with _loopback_only():
                ray.init(num_cpus=int(os.environ.get("RECOT_RAY_CPUS", os.cpu_count() or 1)),
                         _node_ip_address=LOOPBACK, **kwargs)
        log.info("ray initialised: %s", ray.cluster_resources())  # type: ignore[no-untyped-call]
    return ray


def _ray_map_batches(table: pa.Table, fn: BatchFn, batch_size: int) -> pa.Table:
    ray = _ensure_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ds = ray.data.from_arrow(table).map_batches(fn, batch_format="pyarrow", batch_size=batch_size)
    parts = ray.get(ds.to_arrow_refs())
    if not parts:
        return fn(table.slice(0, 0))
    return pa.concat_tables(parts, promote_options="default")
