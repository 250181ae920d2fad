# Numerical guards: a NaN in the gradients or in the loss stops training with a message naming
# the step and the layer, suggests a lower learning rate, exits 1, and leaves the last good
# checkpoint (finite, at the step before) in place; --resume then continues.
source "$(dirname "$0")/lib.sh"
ARGS=("${TINY[@]}" --epochs 3 --checkpoint-every 1)

note "a NaN in one gradient (injected after backward at global step 5)"
expect_rc 1 "$TRAIN" "${ARGS[@]}" --out grad --debug-inject-nan grad:up.0.conv2.weight@5
expect_err "a gradient became non-finite at epoch 2, step 2 (global step 5)"
expect_err "NaN in 1 of 147456 values of the gradient of up.0.conv2.weight"
expect_err "up.0.conv2.weight"
expect_err "the first layer backward reached; stopped before the optimizer step"
expect_err "try a lower --lr"
expect_err "grad/latest.safetensors keeps the last good state (global step 4)"
[[ $("$TOOL" metadata grad/latest.safetensors kiln.train.step) == 4 ]] || fail "latest.safetensors should hold step 4"
run "$TOOL" finite grad/latest.safetensors
[[ $RC == 0 ]] || { show; fail "the kept checkpoint is not finite"; }
expect_rc 0 "$TRAIN" --resume --out grad --threads 1
[[ $("$TOOL" metadata grad/latest.safetensors kiln.train.step) == 9 ]] || fail "the resumed run should end at step 9"

note "a NaN in one weight of the first block (before global step 2): ReLU hides it from the loss, the gradients show it"
expect_rc 1 "$TRAIN" "${ARGS[@]}" --out weight --debug-inject-nan weight:down.1.conv1.weight@2
expect_err "a gradient became non-finite at epoch 1, step 2 (global step 2)"
expect_err "the weights are not finite either: NaN in 1 of .* values of down.1.conv1.weight"
[[ $("$TOOL" metadata weight/latest.safetensors kiln.train.step) == 1 ]] || fail "latest.safetensors should hold step 1"
run "$TOOL" finite weight/latest.safetensors
[[ $RC == 0 ]] || { show; fail "the kept checkpoint is not finite"; }

note "a NaN in the output layer's weight (before global step 2): the loss becomes NaN"
expect_rc 1 "$TRAIN" "${ARGS[@]}" --out head --debug-inject-nan weight:head.weight@2
expect_err "the training loss became NaN at epoch 1, step 2 (global step 2)"
expect_err "the first non-finite weight: NaN in 1 of 32 values of head.weight"
expect_err "try a lower --lr"
expect_err "head/latest.safetensors keeps the last good state (global step 1)"
[[ $("$TOOL" metadata head/latest.safetensors kiln.train.step) == 1 ]] || fail "latest.safetensors should hold step 1"
run "$TOOL" finite head/latest.safetensors
[[ $RC == 0 ]] || { show; fail "the kept checkpoint is not finite"; }

note "an absurd learning rate (1e30) is stopped, never saved"
expect_rc 1 "$TRAIN" "${ARGS[@]}" --out lr --lr 1e30
expect_err "at epoch 1, step 2 (global step 2)"
expect_err "try a lower --lr (e.g. 1e+29)"
for f in lr/latest.safetensors lr/best.safetensors; do
  if [[ -f $f ]]; then
    run "$TOOL" finite $f
    [[ $RC == 0 ]] || { show; fail "$f holds non-finite values"; }
  fi
done

note "bad --debug-inject-nan values are usage errors"
expect_rc 2 "$TRAIN" "${ARGS[@]}" --out bad --debug-inject-nan nonsense
expect_err "KIND:NAME@STEP"
expect_rc 1 "$TRAIN" "${ARGS[@]}" --out bad --debug-inject-nan grad:no.such.weight@1
expect_err "no parameter 'no.such.weight'"
echo "OK"
