source "$(dirname "$0")/lib.sh"
note "6 steps straight"
expect_rc 0 "$TRAIN" "${TINY[@]}" --out straight

note "3 steps (the end of epoch 1), then --resume"
expect_rc 0 "$TRAIN" "${TINY[@]}" --out halves --stop-at-step 3
[[ $("$TOOL" metadata halves/latest.safetensors kiln.train.step) == 3 ]] || fail "stopped checkpoint should be at step 3"
[[ $("$TOOL" metadata halves/latest.safetensors kiln.train.epoch) == 1 ]] || fail "stopped checkpoint should be after epoch 1"
expect_rc 0 "$TRAIN" --resume --out halves --threads 1
expect_out "resumed from halves/latest.safetensors at epoch 1, step 0"
[[ $(lines halves/metrics.jsonl) == 2 ]] || { cat halves/metrics.jsonl; fail "metrics.jsonl should have 2 lines after resuming"; }
[[ $("$TOOL" metadata halves/latest.safetensors kiln.train.step) == 6 ]] || fail "resumed run should end at step 6"
run "$TOOL" compare straight/latest.safetensors halves/latest.safetensors
[[ $RC == 0 ]] || { show; fail "3 + resume + 3 steps differ from 6 steps straight"; }
cat last.out

note "4 steps (mid-epoch), then --resume CHECKPOINT"
expect_rc 0 "$TRAIN" "${TINY[@]}" --out mid --stop-at-step 4
[[ $("$TOOL" metadata mid/latest.safetensors kiln.train.step_in_epoch) == 1 ]] || fail "mid-epoch checkpoint should be at step 1 of epoch 2"
cp mid/latest.safetensors mid-step4.safetensors
expect_rc 0 "$TRAIN" --resume mid-step4.safetensors --out mid --threads 1
expect_out "at epoch 1, step 1"
run "$TOOL" compare straight/latest.safetensors mid/latest.safetensors
[[ $RC == 0 ]] || { show; fail "4 + resume + 2 steps differ from 6 steps straight"; }
cat last.out
grep -q '"epoch":2' mid/metrics.jsonl || fail "the resumed run did not record epoch 2"

note "resuming a finished run with more epochs continues"
expect_rc 0 "$TRAIN" --resume --out straight --threads 1 --epochs 3
[[ $("$TOOL" metadata straight/latest.safetensors kiln.train.step) == 9 ]] || fail "extended run should end at step 9"
[[ $(lines straight/metrics.jsonl) == 3 ]] || fail "extended run should have 3 metrics lines"
echo "OK"
