"""A small REST client for the Argilla 2.x API (v1 endpoints), over httpx.

Why not only the `argilla` SDK: push and pull need control the SDK does not give — our own batches and
progress (the SDK prints its own bars), listing external ids cheaply to resume an interrupted push, and one
place that turns 'server down', 'wrong key' and 'dataset deleted on the server' into a RecotError the CLI
prints as one line. The payloads are the ones the SDK itself sends (argilla/_api/*).
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

import httpx

from curation.review.stack import Connection, StackError

log = logging.getLogger(__name__)

MAX_PAGE = 1000  # the server caps list/search pages at 1000 items


class DatasetGone(StackError):
    """The Argilla dataset was deleted on the server (or never existed)."""


class ArgillaClient:
    """Thin wrapper: one method per endpoint recot uses, errors mapped to StackError."""

    def __init__(self, conn: Connection, timeout_s: float = 60.0):
        self.conn = conn
        self._http = httpx.Client(base_url=conn.url, headers=conn.headers(), timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ArgillaClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def request(self, method: str, path: str, *, what: str = "", **kw) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            hint = "run `recot review up`" if self.conn.managed else "check ARGILLA_API_URL"
            raise StackError(f"Argilla server at {self.conn.url} is not reachable ({type(exc).__name__}: "
                             f"{exc}); {hint}. Local data is unchanged; re-run the command to resume.") from None
        if r.status_code in (401, 403):
            raise StackError(f"Argilla server at {self.conn.url} rejected the API key for {what or path} "
                             f"(HTTP {r.status_code}); " + ("check ARGILLA_API_KEY" if not self.conn.managed else
                                                             "the workspace's credentials do not match this server"))
        if r.status_code == 404:
            raise DatasetGone(f"Argilla: {what or path} not found on {self.conn.url} (HTTP 404: {r.text[:200]})")
        if r.status_code >= 400:
            raise StackError(f"Argilla: {method} {path} ({what}) failed with HTTP {r.status_code}: {r.text[:500]}")
        if r.status_code == 204 or not r.content:
            return None
        return r.json()

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> Any:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw) -> Any:
        return self.request("PUT", path, **kw)

    # ------------------------------------------------------------------ users & workspaces
    def me(self) -> dict:
        return self.get("/api/v1/me", what="current user")

    def users(self) -> list[dict]:
        return self.get("/api/v1/users", what="users")["items"]

    def user(self, user_id: str) -> dict:
        return self.get(f"/api/v1/users/{user_id}", what=f"user {user_id}")

    def create_user(self, username: str, password: str, role: str = "annotator", first_name: str | None = None) -> dict:
        return self.post("/api/v1/users", what=f"create user {username}",
                         json={"username": username, "password": password, "role": role,
                               "first_name": first_name or username})

    def add_user_to_workspace(self, workspace_id: str, user_id: str) -> None:
        existing = self.get(f"/api/v1/workspaces/{workspace_id}/users", what="workspace users")["items"]
        if any(u["id"] == user_id for u in existing):
            return
        self.post(f"/api/v1/workspaces/{workspace_id}/users", what="add user to workspace", json={"user_id": user_id})

    def workspaces(self) -> list[dict]:
        return self.get("/api/v1/me/workspaces", what="workspaces")["items"]

    def ensure_workspace(self, name: str) -> dict:
        for w in self.workspaces():
            if w["name"] == name:
                return w
        return self.post("/api/v1/workspaces", what=f"create workspace {name}", json={"name": name})

    # ------------------------------------------------------------------ datasets
    def find_dataset(self, workspace_id: str, name: str) -> dict | None:
        for d in self.get("/api/v1/me/datasets", what="datasets")["items"]:
            if d["name"] == name and d["workspace_id"] == workspace_id:
                return d
        return None

    def dataset(self, dataset_id: str) -> dict:
        return self.get(f"/api/v1/datasets/{dataset_id}", what=f"Argilla dataset {dataset_id}")

    def create_dataset(self, workspace_id: str, name: str, *, guidelines: str, fields: list[dict],
                       questions: list[dict], metadata: list[dict]) -> dict:
        """Create, configure and publish a dataset. A half-configured draft left by a crash is finished
        (existing fields/questions/metadata are not re-added)."""
        ds = self.find_dataset(workspace_id, name)
        if ds is None:
            ds = self.post("/api/v1/datasets", what=f"create dataset {name}",
                           json={"name": name, "workspace_id": workspace_id, "guidelines": guidelines,
                                 "allow_extra_metadata": False,
                                 "distribution": {"strategy": "overlap", "min_submitted": 1}})
        if ds["status"] == "ready":
            return ds
        did = ds["id"]
        have = {f["name"] for f in self.get(f"/api/v1/datasets/{did}/fields", what="fields")["items"]}
        for f in fields:
            if f["name"] not in have:
                self.post(f"/api/v1/datasets/{did}/fields", what=f"field {f['name']}", json=f)
        have = {q["name"] for q in self.questions(did)}
        for q in questions:
            if q["name"] not in have:
                self.post(f"/api/v1/datasets/{did}/questions", what=f"question {q['name']}", json=q)
        have = {m["name"] for m in self.get(f"/api/v1/me/datasets/{did}/metadata-properties",
                                            what="metadata properties")["items"]}
        for m in metadata:
            if m["name"] not in have:
                self.post(f"/api/v1/datasets/{did}/metadata-properties", what=f"metadata {m['name']}", json=m)
        return self.put(f"/api/v1/datasets/{did}/publish", what=f"publish dataset {name}")

    def questions(self, dataset_id: str) -> list[dict]:
        return self.get(f"/api/v1/datasets/{dataset_id}/questions", what=f"questions of dataset {dataset_id}")["items"]

    # ------------------------------------------------------------------ records
    def iter_records(self, dataset_id: str, *, include: tuple[str, ...] = (), page: int = MAX_PAGE) -> Iterator[dict]:
        """Every record of a dataset, in insertion order, page by page."""
        offset = 0
        while True:
            out = self.get(f"/api/v1/datasets/{dataset_id}/records", what=f"records of dataset {dataset_id}",
                           params={"include": list(include), "offset": offset, "limit": page})
            items = out["items"]
            yield from items
            offset += len(items)
            if not items or offset >= out.get("total", 0):
                return

    def external_ids(self, dataset_id: str) -> set[str]:
        return {r["external_id"] for r in self.iter_records(dataset_id) if r.get("external_id")}

    def bulk_upsert(self, dataset_id: str, items: list[dict]) -> dict:
        return self.put(f"/api/v1/datasets/{dataset_id}/records/bulk", what=f"upsert {len(items)} records",
                        json={"items": items})
