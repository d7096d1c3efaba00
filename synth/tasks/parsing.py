"""Answer parsing for synthesis tasks lives in `storage.answer` (one home for synth, curation and trainers);
this module re-exports what task parsers use."""
from __future__ import annotations

from storage.answer import (
                            THINK_CLOSE,
                            THINK_OPEN,
                            Parsed,
                            extract_json_object,
                            parse_logic_chain,
                            plain_answer,
                            split_think,
                            strip_answer_marker,
                            validate_logic_chain,
)

__all__ = ["THINK_CLOSE", "THINK_OPEN", "Parsed", "extract_json_object", "parse_logic_chain", "plain_answer",
           "split_think", "strip_answer_marker", "validate_logic_chain"]
