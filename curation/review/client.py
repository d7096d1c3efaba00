"""recot's door to an Argilla server: the `argilla` SDK (2.8), with its errors turned into one-line StackErrors.

Everything review does on the server goes through the SDK: workspaces, users, dataset settings (fields,
questions, metadata properties), records with suggestions and metadata (`dataset.records.log`), and reading
responses (the SDK's records API, see pull.responses). Raw REST is left in exactly two places, each because
the SDK has no call for it:

- `stack.ping` (`GET /api/v1/me` with a 2–5 s timeout): the stack launcher polls it while the server starts
  and `status` calls it to tell 'down' from 'wrong key'; the SDK's client constructor does the same request
  but with 5 connection retries and a 60 s timeout, too slow for either.
- `annotator_api_key` (`GET /api/v1/users/{id}`): the SDK's user model has no `api_key` field, and an
  annotator needs its own key. It goes through the SDK's own authenticated http client.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

from curation.review.stack import Connection, StackError

if TYPE_CHECKING:
    import argilla as rg

log = logging.getLogger(__name__)


class DatasetGone(StackError):
    """The Argilla dataset was deleted on the server (or never existed)."""


def _hint(conn: Connection) -> str:
    return "run `recot review up`" if conn.managed else "check ARGILLA_API_URL"


@contextmanager
def argilla_errors(conn: Connection, what: str) -> Iterator[None]:
    """Turn the SDK's and httpx's exceptions raised while doing `what` into one-line StackErrors."""
    from argilla._exceptions import (
        ArgillaAPIError,
        ArgillaCredentialsError,
        ForbiddenError,
        NotFoundError,
        UnauthorizedError,
    )

    try:
        yield
    except httpx.TransportError as exc:
        raise StackError(f"Argilla server at {conn.url} is not reachable ({type(exc).__name__}: {exc}); "
                         f"{_hint(conn)}. Local data is unchanged; re-run the command to resume.") from None
    except (ArgillaCredentialsError, UnauthorizedError, ForbiddenError) as exc:
        raise StackError(f"Argilla server at {conn.url} rejected the API key for {what} ({exc}); " +
                         ("check ARGILLA_API_KEY" if not conn.managed else
                          "the workspace's credentials do not match this server")) from None
    except httpx.HTTPStatusError as exc:  # from the raw REST call below
        if exc.response.status_code in (401, 403):
            raise StackError(f"Argilla server at {conn.url} rejected the API key for {what} "
                             f"(HTTP {exc.response.status_code})") from None
        raise StackError(f"Argilla: {what} failed with HTTP {exc.response.status_code}: "
                         f"{exc.response.text[:500]}") from None
    except NotFoundError as exc:
        raise DatasetGone(f"Argilla: {what}: not found on {conn.url} ({str(exc)[:200]})") from None
    except ArgillaAPIError as exc:
        raise StackError(f"Argilla: {what} failed with HTTP {exc.status_code}: {str(exc)[:500]}") from None


@contextmanager
def argilla_client(conn: Connection, what: str = "review") -> Iterator[rg.Argilla]:
    """An SDK client for `conn` (the SDK checks the key on creation); its errors inside the block become
    StackErrors, and its http connections are closed at the end."""
    import argilla as rg

    with argilla_errors(conn, what):
        client = rg.Argilla(api_url=conn.url, api_key=conn.api_key, timeout=60)
        try:
            yield client
        finally:
            client.http_client.close()


def find_workspace(client: rg.Argilla, name: str) -> rg.Workspace | None:
    """Workspace `name`, or None (the SDK's own lookup warns when it is missing)."""
    return next((w for w in client.workspaces.list() if w.name == name), None)


def ensure_workspace(client: rg.Argilla, name: str) -> rg.Workspace:
    import argilla as rg

    return find_workspace(client, name) or rg.Workspace(name=name, client=client).create()


def find_dataset(client: rg.Argilla, workspace: str, name: str) -> rg.Dataset | None:
    """Dataset `name` of workspace `workspace` with its settings loaded, or None."""
    w = find_workspace(client, workspace)
    ds = next((d for d in w.datasets if d.name == name), None) if w is not None else None
    return ds.get() if ds is not None else None


def is_published(ds: rg.Dataset) -> bool:
    """False for a draft: a dataset whose creation was interrupted before the SDK published it."""
    return bool(ds.serialize().get("status") == "ready")


def record_ids(ds: rg.Dataset) -> dict[str, str]:
    """recot sample id (the record's `id` in the SDK, `external_id` on the server) → the server's record id."""
    return {str(r.id): str(r.to_dict()["_server_id"])
            for r in ds.records(batch_size=1000, with_suggestions=False, with_responses=False)}


def annotator_api_key(client: rg.Argilla, user_id: str) -> str:
    """An annotator's API key, read as owner. Raw REST because the SDK's user model has no `api_key`."""
    r = client.http_client.get(f"/api/v1/users/{user_id}")
    r.raise_for_status()
    return str(r.json()["api_key"])


def server_record_ids(conn: Connection, workspace: str, dataset: str) -> dict[str, str]:
    """sample id → server record id of every record of `workspace`/`dataset` ({} when there is no such
    dataset): what an annotator's client needs to answer a record."""
    with argilla_client(conn, f"records of {dataset}") as client:
        ds = find_dataset(client, workspace, dataset)
        return record_ids(ds) if ds is not None else {}
