# kiln-train on the Cuda device (kiln's CPU emulator without a GPU, when built with
# KILN_PROGRAMS_CUDA_DEVICE): the step replayed from a CUDA graph writes the same checkpoint as
# the step queued launch by launch; the device-side NaN/Inf check, read every few steps, stops the
# run with the host check's messages (the step, the tensor) and keeps the last good checkpoint.
source "$(dirname "$0")/lib.sh"
ARGS=(--data "$PHOTOS" --val-split 0.4 --crop 32 --batch 2 --epochs 2 --steps-per-epoch 3 --threads 1 --samples 0
      --val-crops 1 --device cuda --loss-every 2 --lr 3e-3)
run "$TRAIN" "${ARGS[@]}" --out probe --stop-at-step 0 --epochs 1
if grep -q "KILN_PROGRAMS_CUDA_DEVICE=ON" last.err; then
  echo "SKIPPED: kiln-train built without --device cuda"
  exit 77
fi

note "graph on (default) and off: the same checkpoint tensors, bit for bit"
expect_rc 0 "$TRAIN" "${ARGS[@]}" --out on
expect_err "step: CUDA graph, fp32, losses and the device's NaN/Inf check read every 2 steps"
expect_rc 0 "$TRAIN" "${ARGS[@]}" --out off --cuda-graph off
expect_err "step: eager launches"
run "$TOOL" compare on/latest.safetensors off/latest.safetensors
[[ $RC == 0 ]] || { show; fail "the graph's checkpoint differs from the eager one"; }
cmp <(cut -d, -f1-6 on/metrics.jsonl | sed 's/"seconds":[^,]*//; s/"images_per_s":[^,]*//') \
    <(cut -d, -f1-6 off/metrics.jsonl | sed 's/"seconds":[^,]*//; s/"images_per_s":[^,]*//') >/dev/null ||
  fail "the losses in metrics.jsonl differ between graph on and off"

NAN=(--data "$PHOTOS" --val-split 0.4 --crop 32 --batch 2 --epochs 3 --steps-per-epoch 3 --threads 1 --samples 0
     --val-crops 1 --device cuda --loss-every 4)
note "a NaN in one gradient at global step 5, read with the losses after step 6"
expect_rc 1 "$TRAIN" "${NAN[@]}" --out grad --debug-inject-nan grad:up.0.conv2.weight@5
expect_err "a gradient became non-finite at epoch 2, step 2 (global step 5)"
expect_err "NaN in 1 of 147456 values of the gradient of up.0.conv2.weight"
expect_err "the first layer backward reached; stopped before the optimizer step"
expect_err "grad/latest.safetensors keeps the last good state (global step 3)"
run "$TOOL" finite grad/latest.safetensors
[[ $RC == 0 ]] || { show; fail "the kept checkpoint is not finite"; }

note "a NaN in one weight before global step 2: the gradients show it, the weights are named"
expect_rc 1 "$TRAIN" "${NAN[@]}" --out weight --debug-inject-nan weight:down.1.conv1.weight@2
expect_err "a gradient became non-finite at epoch 1, step 2 (global step 2)"
expect_err "the weights are not finite either: NaN in 1 of .* values of down.1.conv1.weight"
expect_err "no checkpoint of this run was written yet"

note "a NaN in the output layer's weight: the loss becomes NaN"
expect_rc 1 "$TRAIN" "${NAN[@]}" --out head --debug-inject-nan weight:head.weight@2
expect_err "the training loss became NaN at epoch 1, step 2 (global step 2)"
expect_err "the first non-finite weight: NaN in 1 of 32 values of head.weight"
echo "OK"
