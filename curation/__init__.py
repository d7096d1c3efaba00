"""Curation: filter chains with per-sample verdicts, the funnel report, and (in review/) human review.

Entry points: `curation.chain.run_chain`, `curation.report.funnel`."""
