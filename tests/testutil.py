"""Small helpers shared by several test areas (tests/ is on sys.path through tests/conftest.py)."""
from __future__ import annotations

import socket

import psutil

LOOPBACK = ("127.", "::1", "::ffff:127.")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (bound and released; fine for tests on a loopback host)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def listening(pids: list[int]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket owned by `pids` or their descendants."""
    tree: dict[int, str] = {}
    for pid in pids:
        try:
            p = psutil.Process(pid)
            for q in [p, *p.children(recursive=True)]:
                tree[q.pid] = q.name()
        except psutil.NoSuchProcess:
            continue
    return sorted((tree[c.pid], c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="tcp")
                  if c.status == psutil.CONN_LISTEN and c.pid in tree)


def assert_loopback_only(socks: list[tuple[str, str, int]], *, expect_port: int | None = None) -> None:
    """No listening socket beyond loopback (a wildcard `0.0.0.0` / `::` included), and `expect_port` among them."""
    assert socks, "the service listens on nothing: the test looked at the wrong processes"
    exposed = [s for s in socks if not s[1].startswith(LOOPBACK)]
    assert not exposed, f"listening beyond loopback: {exposed} (all: {socks})"
    if expect_port is not None:
        assert expect_port in {port for _, _, port in socks}, socks
