#!/usr/bin/env bash
# The trainer's GPU check, in one go, on a CUDA machine that has torch, transformers and peft but may have no
# network and no DeepSpeed:
#
#   bash scripts/gpu-check.sh prepare   # where the package index is reachable: wheels into .gpu-wheels/
#   bash scripts/gpu-check.sh           # on the GPU machine, with .gpu-wheels/ copied beside this checkout
#
# It prints the versions it found, runs the CUDA tests (FlashAttention over packed rows, bf16, the chunked
# head loss, ZeRO-2/3 over NCCL, the loss reduction on CUDA tensors), then `distill bench train` on the
# Qwen2-0.5B shape (random weights, bf16, LoRA r32 all-linear, batch 8, lengths 64-1024): distill beside the
# stock HF Trainer with padded batches, real tokens/s, peak GPU memory and memory per token, same card, same
# run. Results go to $OUT (default ./gpu-check-out): bench_train_gpu.json, pytest.log, bench.log.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${GPU_WHEELS:-.gpu-wheels}
PY=${PYTHON:-python3}

# name:import-name, installed from the wheel house only when the GPU machine's Python lacks it.
NEEDED="pydantic:pydantic pydantic-core:pydantic_core annotated-types:annotated_types
typing-inspection:typing_inspection typing_extensions:typing_extensions pyyaml:yaml orjson:orjson rich:rich
markdown-it-py:markdown_it mdurl:mdurl pygments:pygments deepspeed:deepspeed hjson:hjson msgpack:msgpack
py-cpuinfo:cpuinfo psutil:psutil ninja:ninja einops:einops packaging:packaging pytest:pytest pluggy:pluggy
iniconfig:iniconfig pytest-timeout:pytest_timeout"
COMPILED="pydantic-core pyyaml orjson msgpack psutil"
PYTHONS="3.10 3.11 3.12 3.13"

prepare() {
    mkdir -p "$WHEELS"
    local pip=(python -m pip --disable-pip-version-check -q)
    [ -x .venv/bin/python ] && pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
    version() { "${pip[0]}" -c "import importlib.metadata as m; print(m.version('$1'))"; }
    "${pip[@]}" wheel --no-deps -w "$WHEELS" .
    DS_BUILD_OPS=0 "${pip[@]}" wheel --no-deps --no-build-isolation -w "$WHEELS" "deepspeed==$(version deepspeed)"
    for pair in $NEEDED; do
        name=${pair%%:*}
        [ "$name" = deepspeed ] && continue
        pinned="$name==$(version "$name")"
        if [[ " $COMPILED " == *" $name "* ]]; then
            for python in $PYTHONS; do
                "${pip[@]}" download --no-deps --only-binary=:all: --python-version "$python" \
                    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
                    --platform manylinux_2_28_x86_64 -d "$WHEELS" "$pinned"
            done
        else
            "${pip[@]}" download --no-deps --only-binary=:all: -d "$WHEELS" "$pinned"
        fi
    done
    du -sh "$WHEELS"
}

check() {
    OUT=${OUT:-$PWD/gpu-check-out}
    mkdir -p "$OUT"
    SITE=$(mktemp -d)/site
    "$PY" - <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
for i in range(torch.cuda.device_count()):
    print("gpu", i, torch.cuda.get_device_name(i))
import importlib
for name in ("transformers", "peft", "accelerate", "deepspeed", "pydantic"):
    try:
        print(name, importlib.import_module(name).__version__)
    except ImportError:
        print(name, "missing: from the wheel house")
EOF
    missing=()
    for pair in $NEEDED; do
        "$PY" -c "import ${pair##*:}" 2>/dev/null || missing+=("${pair%%:*}")
    done
    "$PY" -c "import pydantic, sys; sys.exit(int(pydantic.VERSION.split('.')[0]) < 2)" 2>/dev/null \
        || missing+=(pydantic pydantic-core)
    pip=("$PY" -m pip --disable-pip-version-check -q install --no-index --no-deps --find-links "$WHEELS" --target "$SITE")
    # distill from this checkout; where it cannot be built here, the wheel house's copy, if it is this code
    if ! "${pip[@]}" --no-build-isolation . 2>/dev/null; then
        "${pip[@]}" distill
        for file in trainer/*.py distill/bench/train*.py; do
            installed="$SITE/distill/${file#distill/}"
            cmp -s "$file" "$installed" || {
                echo "the wheel house's distill differs from this checkout ($file): rerun prepare" >&2
                exit 1
            }
        done
    fi
    [ ${#missing[@]} -eq 0 ] || "${pip[@]}" "${missing[@]}"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    export DISTILL_CACHE="$OUT/cache" TOKENIZERS_PARALLELISM=false

    echo "== CUDA tests"
    "$PY" -m pytest -q -p no:cacheprovider -rs tests/trainer/test_cuda.py tests/trainer/test_distributed.py \
        2>&1 | tee "$OUT/pytest.log" | tail -25 || true

    echo "== distill bench train: Qwen2-0.5B shape, bf16, lengths 64-1024, distill vs the stock HF Trainer"
    "$PY" -m distill bench train --device cuda --model-shape qwen2-0.5b --random-weights \
        --variants "${VARIANTS:-hf,distill}" --steps "${STEPS:-40}" --warmup-steps 5 \
        --out "$OUT/bench_train_gpu.json" 2>&1 | tee "$OUT/bench.log" | tail -20
}

case "${1:-check}" in
    prepare) prepare ;;
    check) check ;;
    *) echo "usage: bash scripts/gpu-check.sh [prepare|check]" >&2; exit 2 ;;
esac
