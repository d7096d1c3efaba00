"""Packaging details pyproject.toml cannot express (everything else is in pyproject.toml).

The top-level configs/ folder (curation chains, teacher and training configs) is user-facing and stays where
users look for it, but it is not a Python package. The wheel ships it as the data-only package
`recot_configs` (setuptools' advice for data outside the code packages), which curation/config.py finds
first; a source checkout without a fresh install falls back to configs/ itself.
"""
from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOT = Path(__file__).parent
CODE = find_namespace_packages(include=["storage*", "synth*", "curation*", "trainers*", "ui*"],
                               exclude=["*__pycache__*"])
CONFIGS = ["recot_configs"] + sorted(f"recot_configs.{d.name}" for d in (ROOT / "configs").iterdir() if d.is_dir())

setup(packages=CODE + CONFIGS, package_dir={"recot_configs": "configs"})
