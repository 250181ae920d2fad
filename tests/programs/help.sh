source "$(dirname "$0")/lib.sh"
note "--help exits 0 and documents the options"
expect_rc 0 "$TRAIN" --help
for o in --data --preset --val --val-split --crop --batch --epochs --steps-per-epoch --time-budget --lr \
         --lr-end-fraction --schedule --optimizer --loss --model --device --threads --seed --out --resume \
         --val-every --samples --overwrite --max-memory; do
  expect_out "$o"
done
expect_out "emulator"
expect_rc 0 "$COLORIZE" --help
for o in --checkpoint --out --max-side --size --scale --compare --device --overwrite --max-memory; do expect_out "$o"; done

note "usage errors exit 2"
expect_rc 2 "$TRAIN"
expect_err "kiln-train: error:"
expect_rc 2 "$TRAIN" --data "$PHOTOS" --bogus
expect_rc 2 "$TRAIN" --data "$PHOTOS" --time-budget 10x
expect_err "time-budget"
expect_rc 2 "$TRAIN" --data "$PHOTOS" --crop 40
expect_err "crop"
expect_rc 2 "$TRAIN" --data "$PHOTOS" --model huge
expect_rc 2 "$TRAIN" --data "$PHOTOS" --crop 16 --batch 1
expect_err "batch"
expect_rc 2 "$COLORIZE"
expect_err "no input images"
# (without --checkpoint kiln-colorize uses the ready-trained model: tests/programs/classify.sh)
echo "OK"
