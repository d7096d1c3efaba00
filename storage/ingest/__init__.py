"""Ingest recommendation data into a workspace catalog.

Every format (MovieLens, Amazon, generic files) only *reads*: it turns its files into normalized Arrow
batches (items, interactions, optionally users) that carry the source file and line of every row. All the
rest — validation that needs the whole data (duplicate ids, unknown items), k-core and minimum-history
filters, the chronological split and the write into the catalog — lives once in `storage.ingest.catalog`
and runs as SQL inside one DuckDB transaction, so a failed ingest leaves the workspace as it was.
"""
from storage.ingest.catalog import IngestOptions, IngestReport

__all__ = ["IngestOptions", "IngestReport"]
