"""Built-in filters, one module per family. Importing this package registers them (see curation.base)."""
from curation.filters import (  # noqa: F401
    cognition,
    dedup,
    format,
    judge,
    leakage,
    outcome,
    quality,
    r2_score,
    rejection,
    sid_grounding,
)
