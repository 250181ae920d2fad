source "$(dirname "$0")/lib.sh"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 1 --out model
CK=model/latest.safetensors

"$TOOL" make-image 37 29 odd.png || fail "make-image"

note "the checkpoint's training is told in steps and epochs, also mid-epoch"
# (on one small picture: the message is what is checked; the photos are colorized below)
expect_rc 0 "$COLORIZE" --checkpoint $CK --out col0 odd.png
expect_out "trained 3 steps (1 epoch of 3 steps)"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 2 --out mid --stop-at-step 4
expect_rc 0 "$COLORIZE" --checkpoint mid/latest.safetensors --out col1 odd.png
expect_out "trained 4 steps (1.33 epochs of 3 steps)"

note "an odd-sized input keeps its size"
expect_rc 0 "$COLORIZE" --checkpoint $CK --out col odd.png
[[ $("$TOOL" image-size col/odd.png) == "37 29" ]] || fail "col/odd.png is not 37x29"

note "--compare writes grey | colorized | original and prints the errors"
expect_rc 0 "$COLORIZE" --checkpoint $CK --out cmp --compare odd.png "$PHOTOS"
expect_file cmp/odd_compare.png
[[ $("$TOOL" image-size cmp/odd_compare.png) == "119 29" ]] || fail "odd_compare.png should be 3 x 37 + 2 gaps of 4 wide"
expect_out "MSE(ab)"
expect_out "mean over"
n=$(ls "$PHOTOS" | grep -ciE '\.(png|jpe?g|bmp|tga)$')
[[ $(ls cmp/*_compare.png | wc -l) == $((n + 1)) ]] || fail "expected $((n + 1)) comparisons"

note "inference on a smaller copy (--max-side, --size, --scale) still writes full size"
for opt in "--max-side 16" "--size 24" "--scale 0.5"; do
  expect_rc 0 "$COLORIZE" --checkpoint $CK --out small --overwrite $opt odd.png
  [[ $("$TOOL" image-size small/odd.png) == "37 29" ]] || fail "$opt: output is not 37x29"
done

note "a bad file among good ones: reported, the others done, exit 1"
echo "not an image" >bad.png
expect_rc 1 "$COLORIZE" --checkpoint $CK --out mixed bad.png odd.png
expect_err "bad.png"
expect_file mixed/odd.png
expect_rc 1 "$COLORIZE" --checkpoint $CK --out mixed missing.png
expect_err "missing.png"
note "--device cuda (kiln's CPU emulator without a GPU) gives the CPU's colours"
run "$COLORIZE" --checkpoint $CK --out cuda --device cuda odd.png
if [[ $RC == 2 ]] && grep -q "built without the Cuda device" last.err; then
  # A build without -DKILN_PROGRAMS_CUDA_DEVICE=ON: a usage error that says how to get it.
  grep -q "KILN_PROGRAMS_CUDA_DEVICE=ON" last.err || { show; fail "--device cuda: the message does not say how to build it"; }
  echo "(this build has no Cuda device: skipped; scripts/test.sh's sanitizer stage builds it)"
else
  [[ $RC == 0 ]] || { show; fail "--device cuda failed"; }
  diff=$("$TOOL" image-diff col/odd.png cuda/odd.png)
  [[ $diff -le 2 ]] || fail "--device cuda differs from the CPU by $diff levels"
fi
echo "OK"
