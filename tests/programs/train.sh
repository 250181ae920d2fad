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
echo "OK"
