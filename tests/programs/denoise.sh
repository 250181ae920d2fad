# kiln-denoise (the second example: its own residual network through the library's public API):
# a few steps on the fixture photos run, write a checkpoint, and the reloaded network gives the
# same whole-photo output; a checkpoint for another noise level is refused by the program's check.
# bash tests/programs/denoise.sh DENOISE TOOL SOURCE_DIR WORK_DIR
DENOISE=$1
source "$(dirname "$0")/lib.sh" "" "" "$2" "$3" "$4"

SMALL=(--data "$PHOTOS" --batch 2 --crop 32 --threads 1 --max-side 96 --val-max-side 96 --tile 64)

note "train 4 steps, checkpoint, reload"
expect_rc 0 "$DENOISE" "${SMALL[@]}" --steps 4 --out "$WORK/out"
expect_file "$WORK/out/denoise.safetensors"
expect_out "reload of .*denoise.safetensors: identical output"
expect_out "validation (1 whole photos"
grep "^validation" last.out >first.txt

note "--steps 0 --load: the same validation numbers from the checkpoint alone"
expect_rc 0 "$DENOISE" "${SMALL[@]}" --steps 0 --load "$WORK/out/denoise.safetensors" --out "$WORK/out2"
expect_out "identical output"
grep "^validation" last.out >second.txt
cmp first.txt second.txt || { show; fail "validation differs after reload"; }

note "a checkpoint for another noise level is refused"
expect_rc 1 "$DENOISE" "${SMALL[@]}" --steps 0 --sigma 15 --load "$WORK/out/denoise.safetensors" --out "$WORK/out3"
expect_err "metadata denoise.sigma = '25', but this program expects '15'"
echo "PASS"
