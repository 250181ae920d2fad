source "$(dirname "$0")/lib.sh"
# Every bad input: exit 1, one line "kiln-train: error: <file>: <problem>" naming the file.
note "missing folder"
expect_rc 1 "$TRAIN" "${TINY[@]}" --data no/such/folder --out o1
expect_err "kiln-train: error: no/such/folder: "

note "empty folder"
mkdir -p empty
expect_rc 1 "$TRAIN" --data empty --val "$PHOTOS" --crop 32 --out o2
expect_err "kiln-train: error: empty: "

note "a text file named .png among the photos"
mkdir -p withtext && cp "$PHOTOS"/* withtext/ && echo "hello" >withtext/notes.png
expect_rc 1 "$TRAIN" --data withtext --val "$PHOTOS" --crop 32 --out o3
expect_err "kiln-train: error: withtext/notes.png: "

note "an image smaller than the crop"
mkdir -p tiny && cp "$PHOTOS"/* tiny/ && "$TOOL" make-image 20 20 tiny/small.png
expect_rc 1 "$TRAIN" --data tiny --val "$PHOTOS" --crop 32 --out o4
expect_err "tiny/small.png: .*smaller than the 32-pixel crop"

note "a truncated image (its header is fine, its data is not)"
mkdir -p trunc && cp "$PHOTOS"/* trunc/ && "$TOOL" make-image 256 256 full.png &&
  head -c $(($(stat -c %s full.png) / 2)) full.png >trunc/cut.png
expect_rc 1 "$TRAIN" --data trunc --val "$PHOTOS" --crop 32 --batch 8 --epochs 1 --steps-per-epoch 3 --threads 1 --out o5
expect_err "trunc/cut.png"

note "a good run, then a broken one into the same folder: the checkpoint stays"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 1 --out good
cp good/latest.safetensors good-copy.safetensors
expect_rc 1 "$TRAIN" --data withtext --val "$PHOTOS" --crop 32 --overwrite --out good
cmp -s good/latest.safetensors good-copy.safetensors || fail "a failed run changed the last good checkpoint"

note "a truncated checkpoint"
head -c 5000 good/latest.safetensors >cut.safetensors
expect_rc 1 "$TRAIN" --resume cut.safetensors --out o6
expect_err "kiln-train: error: cut.safetensors: "
expect_rc 1 "$COLORIZE" --checkpoint cut.safetensors "$PHOTOS"
expect_err "kiln-colorize: error: cut.safetensors: "

note "a damaged checkpoint (one byte flipped in the data)"
cp good/latest.safetensors flipped.safetensors
size=$(stat -c %s flipped.safetensors)
printf '\x55' | dd of=flipped.safetensors bs=1 seek=$((size - 100)) conv=notrunc status=none
expect_rc 1 "$COLORIZE" --checkpoint flipped.safetensors "$PHOTOS"
expect_err "flipped.safetensors: .*checksum"

note "a missing checkpoint"
expect_rc 1 "$TRAIN" --resume nothing.safetensors
expect_err "nothing.safetensors"
expect_rc 1 "$COLORIZE" --checkpoint nothing.safetensors "$PHOTOS"
expect_err "nothing.safetensors"

note "a checkpoint of another model size"
expect_rc 0 "$TRAIN" --data "$PHOTOS" --val-split 0.4 --model base --crop 16 --batch 2 --epochs 1 --steps-per-epoch 1 \
  --threads 1 --samples 1 --val-crops 1 --sample-size 32 --out base
expect_rc 1 "$TRAIN" --resume base/latest.safetensors --model small --out o7
expect_err "kiln-train: error: base/latest.safetensors: .*base"
note "... which kiln-colorize recognises and runs"
"$TOOL" make-image 40 30 pic.png
expect_rc 0 "$COLORIZE" --checkpoint base/latest.safetensors --out basecol pic.png
expect_out "base model"
expect_file basecol/pic.png
echo "OK"
