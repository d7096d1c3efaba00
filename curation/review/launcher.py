"""Argilla server launcher — run as a *file* by the Argilla server venv's python, never imported by recot.

    .venv-argilla/bin/python curation/review/launcher.py server --credentials C --port P [--watch-pid N]
    .venv-argilla/bin/python curation/review/launcher.py worker [--watch-pid N]

Why a launcher instead of `python -m argilla_server start`: the in-memory search engine we run
(osmem-server) does not execute OpenSearch *painless scripts*, and Argilla 2.8 uses scripted updates in
exactly three methods (adding / deleting a response, deleting a suggestion). We register a subclass of
`OpenSearchEngine` under the name "opensearch" that does those three updates as read-the-document +
partial update, and it must be registered before `argilla_server.app` (and the worker's jobs) import the
engine registry's users. A discarded response with no values would also crash the upstream mapping
(`response.values` is None); the override treats None as empty.

Everything the server needs comes from ARGILLA_* environment variables set by recot's stack.py (SQLite
file, Redis URL, search engine URL, home path). The owner's username/password/API key are read from the
credentials file (mode 0600), not passed on the command line where `ps` would show them.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time
from typing import Any


def _register_patched_engine() -> None:
    from argilla_server.search_engine.base import SearchEngine
    from argilla_server.search_engine.commons import es_index_name_for_dataset, es_path_for_question_response
    from argilla_server.search_engine.opensearch import OpenSearchEngine

    def response_to_es(response: Any) -> dict[str, Any]:
        values = response.values or {}
        out = {"id": str(response.id), "status": getattr(response.status, "value", response.status),
               "user_id": str(response.user_id)}
        for question, value in values.items():
            out[es_path_for_question_response(question)] = (value or {}).get("value")
        return out

    class NoScriptOpenSearchEngine(OpenSearchEngine):  # type: ignore[misc]  # (untyped server package)
        """OpenSearchEngine whose document updates never use painless scripts (osmem cannot run them)."""

        async def _get_source(self, index_name: str, doc_id: str) -> dict[str, Any]:
            doc = await self.client.get(index=index_name, id=doc_id)
            return doc.get("_source") or {}

        async def update_record_response(self, response: Any) -> None:
            record = response.record
            index_name = es_index_name_for_dataset(record.dataset)
            source = await self._get_source(index_name, str(record.id))
            es_response = response_to_es(response)
            responses = [r for r in (source.get("responses") or []) if str(r.get("id")) != es_response["id"]]
            responses.append(es_response)
            await self._update_document_request(index_name, id=str(record.id), body={"doc": {"responses": responses}})

        async def delete_record_response(self, response: Any) -> None:
            record = response.record
            index_name = es_index_name_for_dataset(record.dataset)
            source = await self._get_source(index_name, str(record.id))
            responses = [r for r in (source.get("responses") or []) if str(r.get("id")) != str(response.id)]
            await self._update_document_request(index_name, id=str(record.id), body={"doc": {"responses": responses}})

        async def delete_record_suggestion(self, suggestion: Any) -> None:
            index_name = es_index_name_for_dataset(suggestion.record.dataset)
            source = await self._get_source(index_name, str(suggestion.record_id))
            suggestions = dict(source.get("suggestions") or {})
            suggestions.pop(suggestion.question.name, None)
            # a partial update merges objects, so the emptied dict is written with the whole document
            source["suggestions"] = suggestions
            await self.client.index(index=index_name, id=str(suggestion.record_id), body=source, refresh=True)

    SearchEngine.register(engine_name="opensearch")(NoScriptOpenSearchEngine)


def _watch_parent(pid: int) -> None:
    """Stop the whole stack (our process group) when the process that asked for it disappears, so a
    killed test session or shell does not leave servers behind."""
    def loop() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                try:
                    os.killpg(os.getpgid(0), signal.SIGTERM)
                finally:
                    os._exit(0)
            except PermissionError:
                pass
            time.sleep(1.0)

    threading.Thread(target=loop, daemon=True, name="parent-watch").start()


def _migrate() -> None:
    from alembic.config import main as alembic_main
    from argilla_server.database import ALEMBIC_CONFIG_FILE

    alembic_main(argv=["-c", ALEMBIC_CONFIG_FILE, "-q", "upgrade", "head"])


async def _wait_search_engine(timeout_s: float = 60.0) -> None:
    from argilla_server.search_engine import SearchEngine
    from argilla_server.settings import settings

    deadline = time.monotonic() + timeout_s
    async with SearchEngine.get_by_name(settings.search_engine) as engine:
        while True:
            try:
                if await engine.ping():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"search engine at {settings.elasticsearch} did not answer in {timeout_s:.0f}s")
            await asyncio.sleep(0.2)


async def _reindex_all() -> int:
    """The search engine is in memory: after a restart it is empty while SQLite still holds every
    dataset, record and response. Rebuild the indexes from the database (Argilla's own Reindexer)."""
    from argilla_server.cli.search_engine.reindex import Reindexer
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.search_engine import SearchEngine
    from argilla_server.settings import settings

    n = 0
    async with AsyncSessionLocal() as db:
        async with SearchEngine.get_by_name(settings.search_engine) as engine:
            async for dataset in Reindexer.reindex_datasets(db, engine):
                async for records in Reindexer.reindex_dataset_records(db, engine, dataset):
                    n += len(records)
    return n


async def _ensure_owner(creds: dict[str, Any]) -> None:
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import User, UserRole

    async with AsyncSessionLocal() as session:
        if await accounts.get_user_by_username(session, creds["username"]):
            return
        await User.create(session, first_name="Owner", last_name=None, username=creds["username"],
                          role=UserRole.owner, password_hash=accounts.hash_password(creds["password"]),
                          api_key=creds["api_key"], workspaces=[])


async def _prepare(creds: dict[str, Any]) -> int:
    """Owner user + search indexes, in ONE event loop; the pooled DB connections are disposed afterwards
    because they would be bound to this loop, not uvicorn's."""
    from argilla_server.database import async_engine

    try:
        await _ensure_owner(creds)
        await _wait_search_engine()
        return await _reindex_all()
    finally:
        await async_engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="argilla-launcher")
    ap.add_argument("mode", choices=["server", "worker"])
    ap.add_argument("--credentials")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--watch-pid", type=int, default=0)
    args = ap.parse_args(argv)
    # owner-only files (the SQLite database holds the owner's API key), also when started by hand
    os.umask(0o077)

    if args.watch_pid:
        _watch_parent(args.watch_pid)
    _register_patched_engine()

    if args.mode == "worker":
        from argilla_server.cli.worker import worker
        from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE

        worker(queues=[DEFAULT_QUEUE.name, HIGH_QUEUE.name], num_workers=1)
        return 0

    with open(args.credentials) as fh:
        creds = json.load(fh)
    _migrate()
    n = asyncio.run(_prepare(creds))
    print(f"launcher: database ready, reindexed {n} records", flush=True)

    import uvicorn
    from argilla_server import app  # noqa: F401  (imported after the engine registration, on purpose)

    uvicorn.run("argilla_server:app", host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
