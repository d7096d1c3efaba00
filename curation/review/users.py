"""Annotator accounts. Annotators get their own user (role `annotator`, member of the 'recot' Argilla
workspace) and their own API key; they never see the owner's key."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from curation.review.client import ArgillaClient
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
    if not USERNAME_RE.match(username):
        raise ConfigError(f"bad annotator name {username!r}: use lowercase letters, digits, '-' and '_'")
    conn = conn or connect(ws)
    with ArgillaClient(conn) as client:
        w = client.ensure_workspace(ARGILLA_WORKSPACE)
        existing = next((u for u in client.users() if u["username"] == username), None)
        created = existing is None
        if created:
            password = password or secrets.token_urlsafe(12)
            existing = client.create_user(username, password, role="annotator")
        elif existing["role"] != "annotator":
            raise ConfigError(f"user {username!r} exists with role {existing['role']!r}, not 'annotator'")
        client.add_user_to_workspace(w["id"], existing["id"])
        full = client.user(existing["id"])  # the owner can read an annotator's API key
    return Annotator(username=username, user_id=existing["id"], api_key=full["api_key"],
                     password=password if created else None, created=created)
