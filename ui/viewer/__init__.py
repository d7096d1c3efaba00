"""The Streamlit trace viewer (`recot ui`).

It only *reads* a workspace: catalog tables through short read-only DuckDB connections
(`Workspace.reader()`, which retries while a writer's brief transaction holds the file) and dataset
versions through an in-memory DuckDB over their Parquet parts, so browsing never blocks or breaks a
running job and paging stays fast on million-sample datasets.

- `queries.py`: every read, as plain functions returning DataFrames/dicts (testable without Streamlit).
- `render.py`: turning model text into safe, plain segments (SIDs as titles, hallucinations flagged).
- `app.py` + `pages/*.py`: the Streamlit script and one module per page.
"""
