"""Test fakes: stand-ins for external services (an OpenAI-compatible server with injected faults)."""
