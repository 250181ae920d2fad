# Crash safety: kiln-train is killed with SIGKILL many times: half of the kills at random moments
# (up to twice the time a run takes to start and save once), half while a save is being written
# (after the run's first save completed, when the temporary file of the next one appears, plus
# 0-15 ms, so that they land at various points of writing the 22 MB, which takes 20-80 ms here).
# --checkpoint-every 1 saves after every step. After every kill the last checkpoint must load
# (both checksums verified by the testtool; every 5th kill the model is also loaded by
# kiln-colorize), must not go back in steps, and the next start resumes from it. KILN_KILLS sets
# the number of kills (default 30; 6 for a sanitizer build, which checks the code paths, not
# the count: 3 random moments, 3 during a save, one load by kiln-colorize).
source "$(dirname "$0")/lib.sh"
if ldd "$TRAIN" 2>/dev/null | grep 'libasan\|libtsan' >/dev/null; then KILLS=${KILN_KILLS:-6}; else KILLS=${KILN_KILLS:-30}; fi
RANDOM=20261201  # the same kill moments every run (bash's RANDOM is seeded)
"$TOOL" make-image 40 30 probe.png || fail "make-image"
ARGS=("${TINY[@]}" --epochs 100000 --steps-per-epoch 4 --checkpoint-every 1 --samples 0 --out run)

# Microseconds since the epoch, without forking: ${EPOCHREALTIME/./}.
# Waits N microseconds without forking (an external sleep takes 10-30 ms to start on a busy machine).
spin_us() {
  local until=$((${EPOCHREALTIME/./} + $1))
  while ((${EPOCHREALTIME/./} < until)); do :; done
}
# wait_for present|absent FILE PID: polls (up to 60 s) while the process lives.
wait_for() {
  local until=$((${EPOCHREALTIME/./} + 60000000))
  while ((${EPOCHREALTIME/./} < until)) && kill -0 "$3" 2>/dev/null; do
    if [[ $1 == present && -e $2 ]] || [[ $1 == absent && ! -e $2 ]]; then return 0; fi
  done
  return 1
}

# A first checkpoint, so that every kill has a last good state to keep; its duration (start-up,
# one step, one save) scales the random kill moments to this machine's speed.
t0=${EPOCHREALTIME/./}
expect_rc 0 "$TRAIN" "${ARGS[@]}" --stop-at-step 1
run_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
last=1 mid_write=0 loads=0
for i in $(seq "$KILLS"); do
  "$TRAIN" --resume --out run --threads 1 >>train.out 2>>train.err &
  pid=$!
  tmp=run/latest.safetensors.tmp.$pid
  if ((i % 2 == 0)); then
    wait_for present $tmp $pid && wait_for absent $tmp $pid && wait_for present $tmp $pid
    spin_us $((RANDOM % 15000))
  else
    ms=$((run_ms / 5 + RANDOM % (2 * run_ms)))
    sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
  fi
  kill -KILL $pid 2>/dev/null
  wait $pid 2>/dev/null
  rc=$?
  [[ $rc == 137 ]] || { tail -20 train.err; fail "kill $i: the trainer ended by itself (exit status $rc) before SIGKILL"; }
  if [[ -e $tmp ]]; then mid_write=$((mid_write + 1)); fi
  run "$TOOL" metadata run/latest.safetensors kiln.train.step
  [[ $RC == 0 ]] || { show; fail "kill $i: run/latest.safetensors does not load"; }
  step=$(cat last.out)
  [[ $step -ge $last ]] || fail "kill $i: latest.safetensors went back from step $last to $step"
  last=$step
  loads=$((loads + 1))
  if ((i % 5 == 0)); then expect_rc 0 "$COLORIZE" --checkpoint run/latest.safetensors --out col --overwrite probe.png; fi
done
note "$KILLS kills: $mid_write while a save was in progress (a temporary file was left); last checkpoint at step $last, checked $loads times (a start + 1 step + 1 save took $run_ms ms)"
[[ $last -gt 1 ]] || fail "the killed runs never saved a checkpoint: the kills came too early"
[[ $mid_write -gt 0 ]] || fail "no kill landed during a save: the test did not test what it should"

note "a last resume without a kill finishes cleanly and removes the temporaries"
had_temporaries=$(compgen -G "run/*.tmp.*" | wc -l)
expect_rc 0 "$TRAIN" --resume --out run --threads 1 --stop-at-step $((last + 2))
expect_out "resumed from run/latest.safetensors"
if [[ $had_temporaries -gt 0 ]]; then expect_out "removed $had_temporaries temporary file"; fi
compgen -G "run/*.tmp.*" >/dev/null && fail "temporaries left after a clean run: $(ls run)"
[[ $("$TOOL" metadata run/latest.safetensors kiln.train.step) == $((last + 2)) ]] || fail "the resumed run did not continue"
grep -q "error" train.err && { grep "error" train.err | head; fail "a killed run reported an error"; }
echo "OK"
