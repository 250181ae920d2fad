# kiln-train --loss classify and kiln-colorize on its checkpoint; --compare's numbers; the
# ready-trained colorizer when no --checkpoint is given.
source "$(dirname "$0")/lib.sh"

note "--loss classify trains a colour-class head and stores its bins in the checkpoint"
expect_rc 0 "$TRAIN" "${TINY[@]}" --loss classify --out cls
expect_out "loss classify"
expect_out "UNet<1,313,16,4>"
CK=cls/latest.safetensors
[[ $("$TOOL" metadata $CK kiln.colour.loss) == classify ]] || fail "kiln.colour.loss is not classify"
centres=$("$TOOL" metadata $CK kiln.colour.centres) || fail "no kiln.colour.centres"
weights=$("$TOOL" metadata $CK kiln.colour.weights) || fail "no kiln.colour.weights"
n_c=$(tr ',' '\n' <<<"$centres" | wc -l) n_w=$(tr ',' '\n' <<<"$weights" | wc -l)
[[ $n_c == $((2 * n_w)) && $n_w -ge 2 && $n_w -le 313 ]] || fail "$n_c centre numbers for $n_w weights"
"$TOOL" finite $CK >/dev/null || fail "classify checkpoint not finite"

note "--resume continues a classify run"
expect_rc 0 "$TRAIN" "${TINY[@]}" --loss classify --epochs 2 --out res --stop-at-step 4
expect_rc 0 "$TRAIN" --resume res/latest.safetensors --out res
expect_out "resumed from"

note "kiln-colorize decodes it (annealed mean) and --compare prints MSE(ab), PSNR, colourfulness and the grey baseline"
"$TOOL" make-image 37 29 odd.png || fail "make-image"
expect_rc 0 "$COLORIZE" --checkpoint $CK --out col --compare odd.png "$PHOTOS"
expect_out "colour classes, annealed mean T 0.38"
expect_out "colourfulness"
grep -q "mean over .* images: MSE(ab) .* (grey baseline .*)  PSNR .* dB (grey .*)  colourfulness .* (true .*, ratio .*; grey 0)" last.out ||
  { show; fail "the mean line lacks a number"; }
[[ $("$TOOL" image-size col/odd.png) == "37 29" ]] || fail "col/odd.png is not 37x29"
expect_rc 0 "$COLORIZE" --checkpoint $CK --out hot --temperature 0.1 odd.png
expect_out "annealed mean T 0.10"
[[ $("$TOOL" image-diff col/odd.png hot/odd.png) -gt 0 ]] || fail "--temperature changed nothing"

note "a classification checkpoint with damaged bins is refused with a sentence naming the file"
"$TOOL" set-metadata $CK kiln.colour.centres "1,2,x" bad.safetensors || fail "set-metadata"
expect_rc 1 "$COLORIZE" --checkpoint bad.safetensors --out bad odd.png
expect_err "bad.safetensors"
expect_err "kiln.colour.centres"
"$TOOL" set-metadata $CK kiln.colour.loss "mse" notclass.safetensors || fail "set-metadata"
expect_rc 1 "$COLORIZE" --checkpoint notclass.safetensors --out bad odd.png
expect_err "313 output channels but no kiln.colour.loss = classify"

note "no --checkpoint: the ready-trained colorizer (models/kiln-colorizer.safetensors), or a clear error"
if [[ -f $SRC/models/kiln-colorizer.safetensors ]]; then
  expect_rc 0 "$COLORIZE" --out ready odd.png
  expect_out "models/kiln-colorizer.safetensors"
  expect_file ready/odd.png
else
  expect_rc 1 "$COLORIZE" --out ready odd.png
  expect_err "ready-trained colorizer is not installed"
fi
echo "OK"
