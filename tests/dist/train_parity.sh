# Two ranks with 8 crops each and synchronised BatchNorm train like one process with 16:
# same crops (the loader's shards), same statistics, averaged gradients. The sums run in
# another order, so the results agree to float rounding: after one step within 7.5e-9 (weights)
# and 1.5e-8 (momentum); after 4 SGD steps (lr 0.01) the weights and running statistics within
# 1e-5 (measured 1.7e-6), the momentum buffers (the latest gradients, which a max-pool near-tie
# or a ReLU sign flipped by rounding moves by one element's share) within 5e-3 (measured 8.5e-4).
# Without --sync-bn they must not agree (each rank normalises its own 8 crops: measured 1.3e-2
# in a running variance, 5.9e-2 in the momentum), which shows the check bites.
source "$(dirname "$0")/lib.sh"
COMMON=(--data "$PHOTOS" --val-split 0.4 --crop 32 --epochs 1 --steps-per-epoch 4 --threads 1 --samples 1
        --val-crops 1 --sample-size 64 --optimizer sgd --lr 0.01 --workers 0)
TOL=(1e-5 5e-3)

note "one process, batch 16"
expect_rc 0 "$TRAIN" "${COMMON[@]}" --batch 16 --out one

note "mpirun -np 2, batch 8 per rank, --sync-bn"
expect_rc 0 mpi 2 "$TRAIN" "${COMMON[@]}" --batch 8 --sync-bn --out two
expect_out "global batch 16 = 2 x 8 per rank, BatchNorm synchronised"
expect_file two/latest.safetensors
expect_file two/metrics.jsonl
[[ $(lines two/metrics.jsonl) == 1 ]] || { cat two/metrics.jsonl; fail "rank 0 alone should write metrics.jsonl (1 line)"; }
[[ $("$TOOL" metadata two/latest.safetensors kiln.train.config | grep -o '"sync_bn":true') ]] || fail "sync_bn not saved in the checkpoint"
run "$TOOL" compare one/latest.safetensors two/latest.safetensors "${TOL[@]}"
[[ $RC == 0 ]] || { show; fail "2 ranks x 8 with --sync-bn differ from 1 process x 16 by more than ${TOL[*]}"; }
cat last.out

note "without --sync-bn the two differ (per-rank statistics)"
expect_rc 0 mpi 2 "$TRAIN" "${COMMON[@]}" --batch 8 --out perrank
expect_out "BatchNorm per rank"
run "$TOOL" compare one/latest.safetensors perrank/latest.safetensors "${TOL[@]}"
[[ $RC != 0 ]] || { show; fail "per-rank BatchNorm should not match one process within ${TOL[*]}"; }
grep -q "largest difference 0.000[1-9]\|largest difference 0.00[1-9]\|largest difference 0.0[1-9]" last.out || { show; fail "per-rank BatchNorm should differ in the weights by more than 1e-4"; }
cat last.out
echo "OK"
