#!/usr/bin/env bash
# One GPU check, ready for the day a GPU is lent (< 8 min on one GPU; no downloads: random weights at the
# real Gemma-2-2B shape). Prints a markdown table for BENCHMARKS.md ("On a GPU").
#
#   bash bench/gpu_check.sh                      # GPU 0
#   bash bench/gpu_check.sh --device 1
#   bash bench/gpu_check.sh --device cpu --tiny  # dry run: toy widths, same code paths (the test runs it)
#
# 1. SAE training step at Gemma-2-2B shape (d 2304, m 18,432, k 64, 8k tokens) in bf16, vs sparsify's
#    SparseCoder (its Triton kernels where Triton is installed): bench/sae_step.py
# 2. harvest tokens/s of Gemma-2-2B to layer 12 in bf16 (32 x 1024 tokens), against the FLOP bound:
#    bench/harvest_flops.py
# 3. one LoRA step (rank 64, all layers, 256k vocabulary, one 1024-token sequence, SAE at layer 12):
#    throughput and peak memory, KL (ours) vs plain CE: bench/lora_step.py
# 4. about a minute of train_sae.py on the random Gemma-2-2B (bf16 + autocast, harvest at full batch)
set -uo pipefail

DEVICE=0
TINY=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --tiny) TINY=1; shift ;;
    *) echo "unknown argument $1 (use --device D, --tiny)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python}"
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && PY=.venv/bin/python
# the benchmark-only packages (sparsify): requirements-bench.txt installed, or a --target folder .bench-site
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
[[ -d .bench-site ]] && export PYTHONPATH="$PYTHONPATH:$ROOT/.bench-site"
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
WORK="${GPU_CHECK_DIR:-$ROOT/.rehearsal/gpu_check}"
mkdir -p "$WORK"
export LORASAE_ROOT="$WORK/outputs"

if [[ $TINY == 1 ]]; then
  SAE_ARGS=(--d_in 64 --d_sae 512 --k 8 --tokens 256 --repeats 2 --warmup 1 --skip_dense)
  HARVEST_ARGS=(--tiny)
  LORA_ARGS=(--d_model 64 --layers 2 --sae_layer 0 --vocab_size 4096 --ctx_len 64 --repeats 1 --warmup 1 --memory false)
  REH_ARGS=(--shrink)
  SAE_RUN=(--layer 2 --k 8 --ctx_len 64 --num_train_tokens 640 --num_val_tokens 128 --eval_every_pct 50)
  LIMIT=300
else
  SAE_ARGS=(--dtype bfloat16 --d_in 2304 --d_sae 18432 --k 64 --tokens 8192 --skip_dense)
  HARVEST_ARGS=(--model gemma-2-2b --layer 12 --batch 32)
  LORA_ARGS=(--dtype bfloat16 --d_model 2304 --layers 26 --sae_layer 12 --repeats 3)
  REH_ARGS=()
  SAE_RUN=(--layer 12 --num_train_tokens 4_000_000 --num_val_tokens 65536 --eval_every_pct 10)
  LIMIT=240
fi

declare -a ROWS
run() {  # name, then the command; keeps its output in $WORK/<name>.log and its last line for the table
  local name="$1"; shift
  local start=$SECONDS
  "$@" >"$WORK/$name.log" 2>&1
  local rc=$?
  local last
  last="$(grep -v '^\s*$' "$WORK/$name.log" | tail -n 1 | tr '|' '/' | cut -c1-300)"
  ROWS+=("| $name | $([[ $rc == 0 ]] && echo ok || echo "FAILED ($rc)") | $((SECONDS - start)) s | $last |")
  echo "[$name] exit $rc in $((SECONDS - start)) s: $last" >&2
}

run sae_step "$PY" bench/sae_step.py --device "$DEVICE" "${SAE_ARGS[@]}"
run harvest "$PY" bench/harvest_flops.py --device "$DEVICE" "${HARVEST_ARGS[@]}"
run lora_step "$PY" bench/lora_step.py --device "$DEVICE" "${LORA_ARGS[@]}"
MODEL_DIR="$("$PY" bench/rehearsal.py --models gemma-2-2b --prepare_only --workdir "$WORK" "${REH_ARGS[@]}" 2>"$WORK/prepare.log" | tail -n 1)"
run train_sae timeout "$LIMIT" "$PY" train_sae.py --device "$DEVICE" --model "$MODEL_DIR" --dataset builtin \
  --checkpoint_every_pct 100 "${SAE_RUN[@]}"

echo
echo "GPU check: device $DEVICE$([[ $TINY == 1 ]] && echo ' (tiny dry run)'), $(date -u +%F), $("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")' 2>/dev/null)"
echo
echo "| check | status | wall | result (last line) |"
echo "|---|---|---|---|"
for row in "${ROWS[@]}"; do echo "$row"; done
failed=0
for row in "${ROWS[@]}"; do [[ $row == *FAILED* ]] && failed=1; done
exit $failed
