"""Which filter class stands behind each verdict label of a curated version.

Verdict rows name a filter by its *label* (the chain's `name:`, the filter's type name by default). The
curation funnel in the version's manifest records label → type for every stage; review uses the type's class
for the issue label a drop stands for (`Filter.review_label`) and to find the judge. A version without a
funnel (e.g. a `review apply` version) takes its parent's; a label that is no registered type and has no
funnel entry (e.g. 'human') is no known filter: issue label 'other', not a judge.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from curation.base import Filter, get_filter_class
from storage.datasets import DatasetVersion, get_version
from storage.errors import NotFound
from storage.workspace import Workspace

JUDGE_TYPE = "judge"


def _funnel_types(ws: Workspace, dv: DatasetVersion, depth: int = 8) -> dict[str, str]:
    """label → filter type from the funnel of `dv`, or of the nearest ancestor that has one."""
    stages = ((dv.manifest or {}).get("funnel") or {}).get("filters") or []
    if stages or depth == 0:
        return {s["name"]: s["type"] for s in stages if s.get("name") and s.get("type")}
    for p in dv.parents or []:
        try:
            parent = get_version(ws, p["name"], p["version"])
        except NotFound:
            continue
        types = _funnel_types(ws, parent, depth - 1)
        if types:
            return types
    return {}


@dataclass
class FilterKinds:
    """label → filter class (None when the label is no known filter)."""

    classes: dict[str, type[Filter[Any]] | None] = field(default_factory=dict)

    def cls(self, label: str) -> type[Filter[Any]] | None:
        if label not in self.classes:
            self.classes[label] = _class_or_none(label)
        return self.classes[label]

    def issue_label(self, label: str) -> str:
        c = self.cls(label)
        return c.review_label if c is not None else "other"

    def is_judge(self, label: str) -> bool:
        c = self.cls(label)
        return c is not None and c.type_name == JUDGE_TYPE


def _class_or_none(type_name: str) -> type[Filter[Any]] | None:
    try:
        return get_filter_class(type_name)
    except KeyError:
        return None


def filter_kinds(ws: Workspace, dv: DatasetVersion) -> FilterKinds:
    """The filter classes behind the verdict labels of curated version `dv`."""
    return FilterKinds({label: _class_or_none(t) for label, t in _funnel_types(ws, dv).items()})
