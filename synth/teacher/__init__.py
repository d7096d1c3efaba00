"""The teacher engine: one interface over OpenAI-compatible servers, offline vLLM and an embedded CPU model,
with a durable request cache, limits, retries and accounting. Tasks and the LLM judge go through it."""
