source "$(dirname "$0")/lib.sh"
note "a tiny run writes every file"
expect_rc 0 "$TRAIN" "${TINY[@]}" --out out
for f in latest.safetensors best.safetensors metrics.jsonl loss.png samples.png; do expect_file out/$f; done
[[ $(lines out/metrics.jsonl) == 2 ]] || { cat out/metrics.jsonl; fail "metrics.jsonl should have 2 lines"; }
for k in epoch step lr train_loss val_mse_ab val_psnr val_colorfulness_pred val_colorfulness_true baseline_mse_ab \
         baseline_psnr seconds images_per_s; do
  grep -q "\"$k\":" out/metrics.jsonl || fail "metrics.jsonl lacks $k"
done
grep -q '"epoch":2' out/metrics.jsonl || fail "no epoch 2 in metrics.jsonl"
"$TOOL" image-size out/loss.png >/dev/null || fail "loss.png is not an image"
"$TOOL" image-size out/samples.png >/dev/null || fail "samples.png is not an image"
[[ $("$TOOL" metadata out/latest.safetensors kiln.train.step) == 6 ]] || fail "latest should be at step 6"
[[ $("$TOOL" metadata out/latest.safetensors kiln.train.model) == small ]] || fail "model name missing"
[[ $("$TOOL" metadata out/latest.safetensors kiln.model) == "UNet<1,2,16,4>" ]] || fail "kiln.model missing"
"$TOOL" metadata out/latest.safetensors kiln.train.config | grep '"crop":32' >/dev/null || fail "config not stored"
expect_out "summary: best val MSE(ab)"
expect_out "grey baseline"

note "scripts/metrics_table.py turns metrics.jsonl into the docs' table"
if command -v python3 >/dev/null; then
  python3 "$SRC/scripts/metrics_table.py" out/metrics.jsonl >table.md || fail "metrics_table.py failed"
  [[ $(grep -c '^| [0-9]' table.md) == 2 ]] || { cat table.md; fail "the table should have 2 epoch rows"; }
  grep -q '^best: epoch' table.md || { cat table.md; fail "the table lacks its best-epoch line"; }
  echo '{"epoch":1}' >broken.jsonl
  expect_rc 1 python3 "$SRC/scripts/metrics_table.py" broken.jsonl
  expect_err "broken.jsonl: a line lacks field"
fi

note "the time budget stops cleanly, still validating and saving"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 1000 --time-budget 3s --out budget
expect_out "time budget"
expect_file budget/latest.safetensors
expect_file budget/samples.png
[[ $(lines budget/metrics.jsonl) -ge 1 ]] || fail "no metrics line after the time budget"

note "optimizers, losses and schedules run"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 1 --optimizer sgd --loss l1 --schedule cosine --out sgd
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 1 --optimizer adamw --loss huber --schedule step --out adamw
note "--precision bf16 on the cpu simulates the BF16 convolutions: said once, recorded, not fp32's numbers"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 1 --device cpu --seed 5 --out fp32
grep "simulated on the cpu" last.out last.err >/dev/null && { show; fail "an fp32 run spoke of a simulation"; }
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 1 --device cpu --seed 5 --precision bf16 --out bf16
expect_out "precision bf16 simulated on the cpu: the 1x1 and 3x3 convolutions round their operands to bfloat16"
[[ $(cat last.out last.err | grep -c "simulated on the cpu") == 1 ]] || { show; fail "the simulation should be said once"; }
"$TOOL" metadata bf16/latest.safetensors kiln.train.config | grep '"precision":"bf16"' >/dev/null ||
  fail "the precision is not stored in the checkpoint"
loss_of() { grep -o '"train_loss":[^,]*' "$1/metrics.jsonl"; }
[[ -n $(loss_of fp32) && $(loss_of fp32) != "$(loss_of bf16)" ]] ||
  fail "bf16 trained to fp32's loss exactly ($(loss_of bf16)): no rounding happened"
echo "OK"
