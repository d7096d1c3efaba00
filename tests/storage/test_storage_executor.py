"""The same batch step gives the same table in-process and on a local Ray instance."""
import functools

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from storage.errors import ConfigError
from storage.executor import map_batches


def _flag_long(batch: pa.Table, min_len: int) -> pa.Table:
    return batch.append_column("long", pc.greater_equal(pc.utf8_length(batch["text"]), min_len))


def _table(n=5000):
    return pa.table({"id": [f"s{i}" for i in range(n)], "text": ["x" * (i % 17) for i in range(n)]})


def test_local_executor_preserves_rows_and_order():
    out = map_batches(_table(), functools.partial(_flag_long, min_len=8), batch_size=700)
    assert out.column("id").to_pylist() == _table().column("id").to_pylist()
    assert out.column("long").to_pylist() == [(i % 17) >= 8 for i in range(5000)]


def test_ray_executor_matches_local(monkeypatch):
    pytest.importorskip("ray")
    import sys

    from ray import cloudpickle

    monkeypatch.setenv("RECOT_RAY_CPUS", "2")
    # test-module functions are not importable on Ray workers; ship them by value (recot's own steps are
    # importable module functions and need no such help)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    fn = functools.partial(_flag_long, min_len=8)
    local = map_batches(_table(), fn, batch_size=700)
    remote = map_batches(_table(), fn, executor="ray", batch_size=700)
    assert remote.equals(local)


def test_unknown_executor_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown executor 'spark'"):
        map_batches(_table(10), lambda t: t, executor="spark")
