"""Workspace storage: the DuckDB catalog, immutable Parquet dataset versions, shared record types and the
SID grammar. Every other package imports from here, never sideways."""
