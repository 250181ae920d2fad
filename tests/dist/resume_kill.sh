# A rank that dies ends the whole run, naming the rank; the last checkpoint (step 3 of 4) resumes on 2 ranks
# (bit for bit the uninterrupted run) and on 1 (same global batch, within float tolerance).
# A rank that fails with an error ends every rank with a message naming it.
source "$(dirname "$0")/lib.sh"
COMMON=(--data "$PHOTOS" --val-split 0.4 --crop 32 --epochs 2 --steps-per-epoch 2 --threads 1 --samples 0
        --val-crops 1 --sample-size 64 --optimizer sgd --lr 0.01 --workers 0 --sync-bn --checkpoint-every 1)

note "2 ranks, 4 steps straight"
expect_rc 0 mpi 2 "$TRAIN" "${COMMON[@]}" --batch 4 --out straight
[[ $("$TOOL" metadata straight/latest.safetensors kiln.train.step) == 4 ]] || fail "straight run should end at step 4"

note "rank 1 is killed (SIGKILL) at step 4: every rank ends, the rank is named"
run mpi 2 "$TRAIN" "${COMMON[@]}" --batch 4 --out killed --debug-fail-rank 1@4
[[ $RC != 0 ]] || { show; fail "a killed rank must end the run with a non-zero status"; }
grep -q "rank 1" last.err last.out || { show; fail "the message should name rank 1"; }
[[ $("$TOOL" metadata killed/latest.safetensors kiln.train.step) == 3 ]] || fail "the last checkpoint should be step 3"
cp killed/latest.safetensors step3.safetensors

note "resume on 2 ranks: the same as straight, bit for bit"
expect_rc 0 mpi 2 "$TRAIN" --resume --out killed --threads 1
expect_out "resumed from killed/latest.safetensors at epoch 1, step 1"
run "$TOOL" compare straight/latest.safetensors killed/latest.safetensors
[[ $RC == 0 ]] || { show; fail "killed + resumed on 2 ranks differs from the straight run"; }
cat last.out

note "resume on 1 process with the same global batch (8): within float tolerance"
mkdir -p single && cp step3.safetensors single/latest.safetensors
expect_rc 0 "$TRAIN" --resume --out single --threads 1 --batch 8
run "$TOOL" compare straight/latest.safetensors single/latest.safetensors 1e-5 5e-3
[[ $RC == 0 ]] || { show; fail "resumed on 1 process (batch 8) differs from 2 ranks x 4 by more than 1e-5 (optimizer state 5e-3)"; }
cat last.out

note "rank 1 fails with an error at step 2: every rank ends, the message names rank 1"
run mpi 2 "$TRAIN" "${COMMON[@]}" --batch 4 --out failing --debug-fail-rank 1@2:error
[[ $RC != 0 ]] || { show; fail "a failing rank must end the run with a non-zero status"; }
grep -q "rank 1 of 2: failing on purpose at global step 2" last.err || { show; fail "the error should name rank 1 of 2"; }
echo "OK"
