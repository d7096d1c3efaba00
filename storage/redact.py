"""Secret redaction for anything recot stores (configs in manifests and runs, logs).

API keys come from the environment; a config may still carry one by mistake (e.g. `api_key:` in YAML).
Whatever is stored goes through `redact` first."""
from __future__ import annotations

import re
from typing import Any

SECRET_KEY_RE = re.compile(r"(api[_-]?key|token|secret|password|passwd|authorization|credential)", re.I)
# Values that look like keys even under an innocent name (OpenAI-style, HF, bearer).
SECRET_VALUE_RE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|hf_[A-Za-z0-9]{8,}|Bearer\s+[A-Za-z0-9._\-]{8,})")
# A password inside a URL: scheme://user:password@host (a teacher base_url, a database or proxy URL).
URL_PASSWORD_RE = re.compile(r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)(?P<pw>[^/\s@]+)(?=@)")
REDACTED = "***redacted***"


def redact(obj: Any) -> Any:
    """Deep copy of `obj` with secret-looking keys' values, key-like strings and passwords in URLs
    (`http://user:pw@host` → `http://user:***redacted***@host`) replaced."""
    if isinstance(obj, dict):
        # numbers are never secrets (keeps max_tokens, prompt_tokens and other counts readable)
        return {k: (REDACTED if isinstance(k, str) and SECRET_KEY_RE.search(k) and v not in (None, "")
                    and not isinstance(v, (int, float)) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return URL_PASSWORD_RE.sub(lambda m: m["pre"] + REDACTED, SECRET_VALUE_RE.sub(REDACTED, obj))
    return obj
