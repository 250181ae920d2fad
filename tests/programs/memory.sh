source "$(dirname "$0")/lib.sh"
# The memory budget: checked before the network's arena is planned and before an image is
# decoded; a refusal names what needed how much and which option to change. Out of memory
# anyway is a sentence, not std::bad_alloc.
"$TOOL" make-image 160 120 pic.png || fail "make-image"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 1 --out model
CK=model/latest.safetensors

note "kiln-colorize over its budget: refused before inferring, with a --max-side that fits"
# The estimate at 160x120 is ~71 MiB (64 of it the program allowance; the network's eval plan ~6 MiB).
expect_rc 1 "$COLORIZE" --checkpoint $CK --out c1 --threads 1 --max-memory 68M pic.png
expect_err "kiln-colorize: error: pic.png: colorizing it needs about .* (the network at 160x120: .*), over the memory budget of 68 MiB (--max-memory 68M): infer on a smaller copy with --max-side [0-9]"
[[ ! -e c1/pic.png ]] || fail "an image refused for memory was written"
note "... the suggested --max-side runs"
side=$(sed -n 's/.*--max-side \([0-9]*\).*/\1/p' last.err)
expect_rc 0 "$COLORIZE" --checkpoint $CK --out c1 --threads 1 --max-memory 68M --max-side "$side" pic.png

note "too many threads: the message says what one thread would need"
expect_rc 1 "$COLORIZE" --checkpoint $CK --out c2 --threads 4096 --max-memory 1G pic.png
expect_err "use fewer --threads (now 4096; with --threads 1 it needs about"

note "a large image is refused from its header, before it is decoded"
"$TOOL" make-image 3000 2000 big.png || fail "make-image"
expect_rc 1 "$COLORIZE" --checkpoint $CK --out c3 --threads 1 --max-side 16 --max-memory 100M big.png
expect_err "big.png: colorizing it needs about .*the 3000x2000 image at full resolution"

note "kiln-train over its budget: refused before training, naming the parts"
expect_rc 1 "$TRAIN" "${TINY[@]}" --batch 64 --crop 64 --max-memory 100M --out t1
expect_err "kiln-train: error: t1: this run needs about .*the network for a batch of 64 crops of 64 pixels.*over the memory budget of 100 MiB.*--batch"
[[ ! -e t1 ]] || fail "a run refused for memory created its folder"
note "... and an image too large to decode within it"
mkdir -p bigdata && cp "$PHOTOS"/* bigdata/ && cp big.png bigdata/
expect_rc 1 "$TRAIN" --data bigdata --val "$PHOTOS" --crop 32 --max-memory 64M --out t2
expect_err "bigdata/big.png: decoding it needs about"

# AddressSanitizer reserves terabytes of address space for its shadow memory: under `ulimit -v`
# it cannot start, so the sanitizer build skips this case (the release build runs it).
# (grep without -q: under pipefail, -q exiting at the first match can SIGPIPE ldd and fail the test)
if ldd "$COLORIZE" 2>/dev/null | grep libasan >/dev/null; then
  note "out of memory despite the budget: skipped under AddressSanitizer (ulimit -v stops ASan itself)"
else
  note "out of memory despite the budget (address space limited, budget off): a sentence"
  # Inference runs in tiles on an eval plan, so the full-size planes are what must not fit: a
  # 1000x750 image inferred at 16x (16000x12000, ~5 GB of planes) in 600 MB of address space.
  "$TOOL" make-image 1000 750 mid.png || fail "make-image"
  ( ulimit -v 600000; "$COLORIZE" --checkpoint $CK --out c4 --threads 1 --max-memory none --scale 16 mid.png ) >last.out 2>last.err
  RC=$?
  [[ $RC == 1 ]] || { show; fail "exit status $RC, expected 1"; }
  expect_err "mid.png: ran out of memory"
  grep -q "bad_alloc" last.err && { show; fail "std::bad_alloc leaked"; }
fi
echo "OK"
