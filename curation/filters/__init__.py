"""Built-in filters, one module per family. Importing this package registers them (see curation.base)."""
from curation.filters import (cognition, dedup, format, judge, leakage, outcome, quality,  # noqa: F401
                              r2_score, rejection, sid_grounding)
