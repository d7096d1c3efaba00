"""Annotator accounts. Annotators get their own user (role `annotator`, member of the 'recot' Argilla
workspace) and their own API key; they never see the owner's key. Users and workspaces go through the
`argilla` SDK; only the key itself is read over REST (the SDK's user model has no `api_key`)."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from curation.review.client import annotator_api_key, argilla_client, ensure_workspace
from curation.review.push import ARGILLA_WORKSPACE
from curation.review.stack import Connection, connect
from storage.errors import ConfigError
from storage.workspace import Workspace

USERNAME_RE = re.compile(r"^(?!-|_)[a-z0-9-_]+$")


@dataclass
class Annotator:
    username: str
    user_id: str
    api_key: str = field(repr=False)
    password: str | None = field(default=None, repr=False)  # None when the user existed already
    created: bool = True


def add_annotator(ws: Workspace, username: str, *, password: str | None = None,
                  conn: Connection | None = None) -> Annotator:
    """Create (or find) annotator `username`, add it to the 'recot' workspace and return its credentials.
    An existing user keeps its password (not retrievable); its API key is returned."""
    import argilla as rg

    if not USERNAME_RE.match(username):
        raise ConfigError(f"bad annotator name {username!r}: use lowercase letters, digits, '-' and '_'")
    conn = conn or connect(ws)
    with argilla_client(conn, f"annotator {username}") as client:
        w = ensure_workspace(client, ARGILLA_WORKSPACE)
        user = next((u for u in client.users.list() if u.username == username), None)
        created = user is None
        if user is None:
            password = password or secrets.token_urlsafe(12)
            user = rg.User(username=username, password=password, role="annotator", client=client).create()
        elif user.role != "annotator":
            raise ConfigError(f"user {username!r} exists with role {getattr(user.role, 'value', user.role)!r}, "
                              "not 'annotator'")
        if all(m.id != user.id for m in client.users.list(workspace=w)):
            user.add_to_workspace(w)
        api_key = annotator_api_key(client, str(user.id))
    return Annotator(username=username, user_id=str(user.id), api_key=api_key,
                     password=password if created else None, created=created)
