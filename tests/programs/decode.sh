source "$(dirname "$0")/lib.sh"
# Every image is fully decoded, or refused, before training starts: an image whose header is
# intact but whose data is cut must stop the run at start-up, naming the file, not epochs later.
JPG=$(ls "$PHOTOS"/*.jpg 2>/dev/null | head -1)
[[ -n $JPG ]] || { echo "no JPEG fixtures: skipped"; exit 77; }
size=$(stat -c %s "$JPG")
sos=$(LC_ALL=C grep -obUaP '\xff\xda' "$JPG" | tail -1 | cut -d: -f1)
[[ -n $sos ]] || fail "no SOS marker in $JPG"

note "a JPEG cut inside its scan data (header intact): refused at start-up, nothing written"
# (stb 2.27 fails on these cuts, some decoders fill the rest with grey: refused before either.)
mkdir -p cut && cp "$PHOTOS"/* cut/ && head -c $((sos + (size - sos) * 6 / 10)) "$JPG" >cut/zz-cut.jpg
expect_rc 1 "$TRAIN" --data cut --val-split 0.4 --crop 32 --batch 2 --epochs 1 --steps-per-epoch 1 --threads 1 --out o1
expect_err "kiln-train: error: cut/zz-cut.jpg: the JPEG ends inside its image data"
[[ ! -e o1/latest.safetensors && ! -e o1/metrics.jsonl ]] || fail "a run refused at start-up wrote files"

note "a JPEG cut before its scan (stb cannot decode it at all): refused at start-up"
mkdir -p cut2 && cp "$PHOTOS"/* cut2/ && head -c $((sos + 4)) "$JPG" >cut2/zz-noscan.jpg
expect_rc 1 "$TRAIN" --data cut2 --val "$PHOTOS" --crop 32 --batch 2 --epochs 50 --steps-per-epoch 1 --threads 1 --out o2
expect_err "cut2/zz-noscan.jpg: "
grep -q "last good checkpoint is kept" last.err && fail "a start-up refusal speaks of a kept checkpoint"
[[ ! -e o2/latest.safetensors ]] || fail "training started with an undecodable image"

note "a truncated uncompressed BMP (stb would fill it with black rows): refused"
mkdir -p bmp && cp "$PHOTOS"/* bmp/ && "$TOOL" make-bmp 64 48 full.bmp && head -c 5000 full.bmp >bmp/zz-cut.bmp
expect_rc 1 "$TRAIN" --data bmp --val "$PHOTOS" --crop 32 --batch 2 --epochs 1 --steps-per-epoch 1 --threads 1 --out o3
expect_err "bmp/zz-cut.bmp: its pixel data needs 9270 bytes but the file holds 5000: it is truncated"
note "... the complete BMP trains"
cp full.bmp bmp/zz-cut.bmp
expect_rc 0 "$TRAIN" --data bmp --val "$PHOTOS" --crop 32 --batch 2 --epochs 1 --steps-per-epoch 1 --threads 1 \
  --samples 1 --val-crops 1 --sample-size 32 --out o4

note "a folder whose one image is not an image: named as such, not as 'holds only one image'"
mkdir -p onebad && echo "not an image" >onebad/a.png
expect_rc 1 "$TRAIN" --data onebad --crop 32 --out o5
expect_err "onebad/a.png: "
grep -q "holds only one image" last.err && { show; fail "a folder without a usable image was said to hold one"; }
mkdir -p one && cp "$JPG" one/
expect_rc 1 "$TRAIN" --data one --crop 32 --out o6
expect_err "one: holds only one image (one/"

note "kiln-colorize warns about a truncated BMP (stb decodes it with black rows) and still colorizes it"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 1 --out model
head -c 5000 full.bmp >cut.bmp
expect_rc 0 "$COLORIZE" --checkpoint model/latest.safetensors --out col cut.bmp
expect_err "kiln-colorize: warning: cut.bmp: its pixel data needs 9270 bytes but the file holds 5000: it is truncated"
expect_file col/cut.png
echo "OK"
