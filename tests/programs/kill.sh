# Crash safety: kiln-train is killed with SIGKILL many times: half of the kills at random moments,
# half just after a save has begun (when its temporary file appears, plus 0-15 ms, so that they
# land at various points of writing the 22 MB, which takes 20-80 ms here). --checkpoint-every 1
# saves after every step. After every kill the last checkpoint must load (both checksums
# verified by the testtool; every 5th kill the model is also loaded by kiln-colorize), must not
# go back in steps, and the next start resumes from it. KILN_KILLS sets the number of kills
# (default 30).
source "$(dirname "$0")/lib.sh"
KILLS=${KILN_KILLS:-30}
RANDOM=20261201  # the same kill moments every run (bash's RANDOM is seeded)
"$TOOL" make-image 40 30 probe.png || fail "make-image"
ARGS=("${TINY[@]}" --epochs 100000 --steps-per-epoch 4 --checkpoint-every 1 --samples 0 --out run)

# Waits N microseconds without forking (an external sleep takes 10-30 ms to start on a busy machine).
spin_us() {
  local until=$((${EPOCHREALTIME/./} + $1))
  while ((${EPOCHREALTIME/./} < until)); do :; done
}

# A first checkpoint, so that every kill has a last good state to keep (on a slow machine or
# under a sanitizer, a random kill could otherwise always come before the first save completes).
expect_rc 0 "$TRAIN" "${ARGS[@]}" --stop-at-step 1
last=1 mid_write=0 loads=0
for i in $(seq "$KILLS"); do
  "$TRAIN" --resume --out run --threads 1 >>train.out 2>>train.err &
  pid=$!
  if ((i % 2 == 0)); then
    # during a save: wait (up to 20 s) for this process's temporary file
    for ((k = 0; k < 200000; k++)); do
      compgen -G "run/latest.safetensors.tmp.$pid" >/dev/null && break
      kill -0 $pid 2>/dev/null || break
    done
    spin_us $((RANDOM % 15000))
  else
    sleep "0.$((3 + RANDOM % 7))$((RANDOM % 10))"  # 0.30 .. 0.99 s: start-up, steps and saves
  fi
  kill -KILL $pid 2>/dev/null
  wait $pid 2>/dev/null
  rc=$?
  [[ $rc == 137 ]] || { tail -20 train.err; fail "kill $i: the trainer ended by itself (exit status $rc) before SIGKILL"; }
  if compgen -G "run/*.tmp.$pid" >/dev/null; then mid_write=$((mid_write + 1)); fi
  run "$TOOL" metadata run/latest.safetensors kiln.train.step
  [[ $RC == 0 ]] || { show; fail "kill $i: run/latest.safetensors does not load"; }
  step=$(cat last.out)
  [[ $step -ge $last ]] || fail "kill $i: latest.safetensors went back from step $last to $step"
  last=$step
  loads=$((loads + 1))
  if ((i % 5 == 0)); then expect_rc 0 "$COLORIZE" --checkpoint run/latest.safetensors --out col probe.png; fi
done
note "$KILLS kills: $mid_write while a save was in progress (a temporary file was left); last checkpoint at step $last, checked $loads times"
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
