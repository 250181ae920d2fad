# kiln-train on the Cuda device (kiln's CPU emulator without a GPU, when built with
# KILN_PROGRAMS_CUDA_DEVICE): the step replayed from a CUDA graph writes the same checkpoint as
# the step queued launch by launch; the device-side NaN/Inf check, read every few steps, stops the
# run with the host check's messages (the step, the tensor). Label "slow": the emulated U-Net step
# takes minutes on a small machine (strict fp32 weight-gradient kernels, one block per channel pair).
source "$(dirname "$0")/lib.sh"
ARGS=(--data "$PHOTOS" --val-split 0.4 --crop 16 --batch 2 --epochs 1 --steps-per-epoch 3 --threads 1 --samples 0
      --val-crops 1 --device cuda --loss-every 2 --lr 3e-3)
run "$TRAIN" --data no-such-folder --device cuda --out probe
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

NAN=("${ARGS[@]}" --loss-every 4)
note "a NaN in one gradient at global step 2, read with the losses after step 3"
expect_rc 1 "$TRAIN" "${NAN[@]}" --out grad --debug-inject-nan grad:up.0.conv2.weight@2
expect_err "a gradient became non-finite at epoch 1, step 2 (global step 2)"
expect_err "NaN in 1 of 147456 values of the gradient of up.0.conv2.weight"
expect_err "the first layer backward reached; stopped before the optimizer step"
expect_err "no checkpoint of this run was written yet"

note "a NaN in the output layer's weight before global step 2: the loss becomes NaN"
expect_rc 1 "$TRAIN" "${NAN[@]}" --out head --debug-inject-nan weight:head.weight@2
expect_err "the training loss became NaN at epoch 1, step 2 (global step 2)"
expect_err "the first non-finite weight: NaN in 1 of 32 values of head.weight"
echo "OK"
