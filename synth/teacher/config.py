"""Teacher configuration: which backend and model, and how hard we may push it.

Only `backend`, `model` and the request itself decide an answer (and the cache key). Everything else here
(concurrency, limits, timeouts, retries, prices) changes how requests are sent or accounted, never what
comes back, so changing it never invalidates the cache.

The API key is never part of the config: `api_key_env` names the environment variable read at call time,
and a YAML file that carries an `api_key:` is refused rather than silently stored.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storage.config import Loc, read_yaml, validate
from storage.errors import ConfigError
from storage.redact import redact

LOCAL_MODEL_NAME = "smollm2-135m-instruct"
LOCAL_DEFAULT_MAX_TOKENS = 256
STRUCTURED_BACKENDS = ("openai", "vllm")   # backends that can constrain an answer to a JSON schema


class TeacherConfig(BaseModel):
    """How to reach a teacher model. Load from YAML with `TeacherConfig.from_yaml(path)`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["openai", "vllm", "local", "skeleton"] = "local"   # skeleton: no model (model: v1)
    model: str = LOCAL_MODEL_NAME
    base_url: str | None = None                    # openai: e.g. http://127.0.0.1:8000/v1; None = api.openai.com
                                                   # a YAML list spreads one job over several servers of the same
                                                   # model: base_url becomes the first, base_urls holds them all
    base_urls: tuple[str, ...] = ()                # openai: every endpoint (least-in-flight; see the backend)
    endpoint_cooldown_s: float = Field(10.0, ge=0)  # openai, several endpoints: how long a failing one rests
    api_key_env: str = "OPENAI_API_KEY"            # env var holding the key; read at call time, never stored
    name: str | None = None                        # display name (runs, viewer); defaults to teacher_id

    # --- limits (not part of the cache key)
    max_concurrency: int = Field(16, ge=1)
    rpm: int | None = Field(None, ge=1)            # requests per minute
    tpm: int | None = Field(None, ge=1)            # tokens per minute (prompt estimate + max_tokens * n)
    timeout_s: float = Field(60.0, gt=0)           # per attempt
    max_retries: int = Field(5, ge=0)              # transport faults: 429, 5xx, timeout, connection, malformed
    unusable_retries: int = Field(1, ge=0)         # empty / truncated / invalid JSON, only when sampling is
                                                   # random: one more sample often helps, more rarely does
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)

    # --- what is asked (part of the cache key when set)
    extra_body: dict[str, Any] = Field(default_factory=dict)  # openai: extra JSON fields of every request, e.g.
                                                   # {chat_template_kwargs: {enable_thinking: false}} (Qwen3)
    max_tokens: int | None = Field(None, ge=1)     # token budget of every request to this teacher, over the
                                                   # task's default (an explicit task option still wins);
                                                   # backend local: 256 unless set (its CPU time grows with it)
    structured_outputs: bool | None = None         # JSON tasks (r2_evolve): ask for the answer's JSON schema
                                                   # (response_format / vLLM structured outputs). None = on for
                                                   # the backends that support it (openai, vllm)

    # --- accounting (prices: these typed values, else genai-prices' table for well-known hosted models)
    price_per_1m_prompt: float | None = Field(None, ge=0)      # USD per 1M prompt tokens
    price_per_1m_completion: float | None = Field(None, ge=0)  # USD per 1M completion tokens
    max_cost_usd: float | None = Field(None, gt=0)  # stop sending once a run has spent this much (resumable)
    tokenizer: str | None = None                   # dry-run token counts: a local HF tokenizer folder or name
                                                   # (None = the model's, when it is available offline)

    # --- backend-specific
    local_batch_size: int = Field(4, ge=1)         # local: requests generated together (same sampling params)
    local_model_path: str | None = None            # local: HF folder; None = the embedded SmolLM2
    local_threads: int | None = Field(None, ge=1)  # local: torch CPU threads (None = torch's default); 1 is
                                                   # much faster on an oversubscribed machine
    vllm_kwargs: dict[str, Any] = Field(default_factory=dict)  # vllm: extra vllm.LLM(...) args (dtype, tp, ...)

    # --- cache durability (see cache.py for the trade-off)
    fsync_interval_ms: float = Field(20.0, ge=0)   # group-commit window; 0 = fsync every response

    @model_validator(mode="before")
    @classmethod
    def _endpoint_list(cls, data: Any) -> Any:
        """`base_url: [url1, url2, ...]` = several servers of one model; `base_url` keeps the first (so every
        single-URL reader, e.g. cost's local-server check, still works) and `base_urls` all of them."""
        if isinstance(data, dict) and isinstance(data.get("base_url"), list | tuple):
            urls = [str(u) for u in data["base_url"]]
            if not urls:
                raise ValueError("base_url: an empty list; give one URL or a list of them")
            return {**data, "base_url": urls[0], "base_urls": tuple(urls)}
        if isinstance(data, dict) and data.get("base_urls") and not data.get("base_url"):
            return {**data, "base_url": list(data["base_urls"])[0]}
        return data

    def endpoints(self) -> list[str | None]:
        """The servers one job spreads over: base_urls, else [base_url] (None = the API's default host)."""
        return list(self.base_urls) if self.base_urls else [self.base_url]

    @model_validator(mode="before")
    @classmethod
    def _skeleton_default_model(cls, data: Any) -> Any:
        """`backend: skeleton` alone means its only version, v1 (the default model names the embedded LLM)."""
        if isinstance(data, dict) and data.get("backend") == "skeleton" and "model" not in data:
            return {**data, "model": "v1"}
        return data

    @model_validator(mode="before")
    @classmethod
    def _local_budget(cls, data: Any) -> Any:
        """The embedded 135M model gets a 256-token budget unless the config names one: it rarely writes more,
        and CoT tasks' 2048-token default would make every CPU run crawl."""
        if isinstance(data, dict) and data.get("backend", "local") == "local" and data.get("max_tokens") is None:
            return {**data, "max_tokens": LOCAL_DEFAULT_MAX_TOKENS}
        return data

    @field_validator("model")
    @classmethod
    def _model_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("model must not be empty")
        return v

    @property
    def teacher_id(self) -> str:
        """'backend:model' — stored with every response and sample so one can tell teachers apart."""
        return f"{self.backend}:{self.model}"

    def structured(self) -> bool:
        """Whether JSON tasks send their answer schema to this teacher (see `structured_outputs`)."""
        if self.structured_outputs is None:
            return self.backend in STRUCTURED_BACKENDS
        return self.structured_outputs

    def api_key(self) -> str | None:
        """The key from the environment, at call time."""
        return os.environ.get(self.api_key_env) or None

    def public_dict(self) -> dict[str, Any]:
        """The config as stored in runs and manifests: secrets redacted."""
        return redact(self.model_dump(mode="json"))

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, source: str = "<dict>",
                  lines: dict[Loc, int] | None = None) -> TeacherConfig:
        """Validate `data` (a file may nest it under a top-level `teacher:`); `lines` (from
        storage.config.read_yaml) lets errors name the line."""
        data = dict(data or {})
        lines = dict(lines or {})
        if "teacher" in data and isinstance(data["teacher"], dict) and len(data) == 1:
            data = dict(data["teacher"])           # allow a file with a top-level `teacher:` section
            lines = {loc[1:]: n for loc, n in lines.items() if loc[:1] == ("teacher",) and len(loc) > 1}
        if "api_key" in data:
            raise ConfigError(f"{source}: field 'api_key': keys are never stored in configs; put the key in "
                              f"an environment variable and name it with api_key_env "
                              f"(default OPENAI_API_KEY)")
        return validate(cls, data, source, lines)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TeacherConfig:
        data, lines = read_yaml(path, what="teacher config", expected="a mapping of teacher settings")
        return cls.from_dict(data, source=str(Path(path)), lines=lines)

    @classmethod
    def coerce(cls, value: TeacherConfig | dict | str | os.PathLike | None) -> TeacherConfig:
        """Accept a config, a dict, a YAML path, a 'backend:model' string, or None (the embedded model)."""
        if value is None:
            return cls()
        if isinstance(value, TeacherConfig):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        s = str(value)
        if s.endswith((".yaml", ".yml")) or Path(s).is_file():
            return cls.from_yaml(s)
        if ":" in s:
            backend, model = s.split(":", 1)
            return cls.from_dict({"backend": backend, "model": model}, source=s)
        return cls.from_dict({"backend": s}, source=s)
