"""Built-in filters, one module per family. Importing this package registers them (see curation.base)."""
from curation.filters import (dedup, format, judge, leakage, outcome, quality, r2_score,  # noqa: F401
                              rejection, sid_grounding)
