# A full disk: the save fails with a message naming the file and the reason, exit status 1, and
# the previous checkpoint stays as it was (loadable, byte for byte). The output folder is a tmpfs
# a little larger than one checkpoint, so the new checkpoint cannot be written next to the old
# one. Needs mount rights (root); exits 77 (skipped) without them.
source "$(dirname "$0")/lib.sh"
"$TOOL" make-image 40 30 probe.png || fail "make-image"

note "a checkpoint on an ordinary disk"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 1 --samples 0 --out first
size=$(stat -c %s first/latest.safetensors)

mkdir -p small
if ! mount -t tmpfs -o size=$((size * 3 / 2)) kiln-test small 2>mount.err; then
  echo "SKIPPED: cannot mount a small tmpfs here ($(cat mount.err)); needs root with mount rights"
  exit 77
fi
trap 'umount -l "$WORK/small" 2>/dev/null' EXIT
cp first/latest.safetensors first/metrics.jsonl small/
cp first/latest.safetensors before.safetensors

note "resume on the small file system: the save at step 4 cannot fit"
expect_rc 1 "$TRAIN" --resume small/latest.safetensors --out small --threads 1 --epochs 2 --stop-at-step 4
expect_err "small/latest.safetensors"
expect_err "No space left on device"
expect_err "the previous latest.safetensors is intact"
cmp -s small/latest.safetensors before.safetensors || fail "the previous checkpoint was changed"
compgen -G "small/*.tmp.*" >/dev/null && fail "a temporary file was left on the full disk: $(ls small)"
expect_rc 0 "$COLORIZE" --checkpoint small/latest.safetensors --out col probe.png
note "and with room again, the same run goes on"
rm -f small/metrics.jsonl
umount small && trap - EXIT
cp before.safetensors small/latest.safetensors
expect_rc 0 "$TRAIN" --resume small/latest.safetensors --out small --threads 1 --epochs 2 --stop-at-step 4
[[ $("$TOOL" metadata small/latest.safetensors kiln.train.step) == 4 ]] || fail "the run should have saved step 4"
echo "OK"
