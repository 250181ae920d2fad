source "$(dirname "$0")/lib.sh"
note "SIGINT: finish the step, save latest, exit 130"
"$TRAIN" "${TINY[@]}" --epochs 1 --steps-per-epoch 1000000 --out run >run.out 2>run.err &
pid=$!
for _ in $(seq 600); do
  grep -q "step" run.err 2>/dev/null && break
  sleep 0.1
done
grep -q "step" run.err || { kill -9 $pid; cat run.out run.err; fail "no progress line within 60 s"; }
kill -INT $pid
wait $pid
rc=$?
[[ $rc == 130 ]] || { cat run.out run.err; fail "exit status $rc after SIGINT, expected 130"; }
grep -q "interrupted" run.out || { cat run.out run.err; fail "no 'interrupted' message"; }
expect_file run/latest.safetensors
step=$("$TOOL" metadata run/latest.safetensors kiln.train.step)
[[ $step -ge 1 ]] || fail "the saved checkpoint has step $step"
note "... and the run resumes from there"
expect_rc 0 "$TRAIN" --resume --out run --threads 1 --stop-at-step $((step + 2))
expect_out "resumed from run/latest.safetensors"
[[ $("$TOOL" metadata run/latest.safetensors kiln.train.step) == $((step + 2)) ]] || fail "resume did not continue"
echo "OK"
