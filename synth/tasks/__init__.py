"""Synthesis tasks: alignment corpus and R0–R3 cognition CoT (see registry.py, run.py, docs/tasks.md)."""
