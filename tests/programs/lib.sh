# Shared by the program tests: bash tests/programs/<name>.sh TRAIN COLORIZE TOOL SOURCE_DIR WORK_DIR
set -uo pipefail
TRAIN=$1 COLORIZE=$2 TOOL=$3 SRC=$4 WORK=$5
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "--- $*"; }

# run CMD...: stdout -> last.out, stderr -> last.err, exit status -> RC
run() { "$@" >last.out 2>last.err; RC=$?; }
show() { echo "[stdout]"; cat last.out; echo "[stderr]"; cat last.err; }
expect_rc() {  # expect_rc CODE CMD...
  local want=$1; shift
  run "$@"
  [[ $RC == "$want" ]] || { show; fail "exit status $RC, expected $want: $*"; }
}
expect_err() { grep -q -- "$1" last.err || { show; fail "stderr does not mention '$1'"; }; }
expect_out() { grep -q -- "$1" last.out || { show; fail "stdout does not mention '$1'"; }; }
expect_file() { [[ -s $1 ]] || fail "missing or empty: $1"; }
lines() { wc -l <"$1" | tr -d ' '; }

# Photos: the fixtures, or a few generated pictures when they are absent.
PHOTOS=$SRC/tests/data/photos
if ! ls "$PHOTOS"/*.jpg >/dev/null 2>&1; then
  PHOTOS=$WORK/photos
  mkdir -p "$PHOTOS"
  for s in "96 80" "120 90" "80 100" "128 96" "100 100"; do
    "$TOOL" make-image ${s% *} ${s#* } "$PHOTOS/gen_${s/ /x}.png" || fail "cannot make test images"
  done
fi

# The smallest real training run: 2 epochs x 3 steps of 2 crops of 32 pixels, one thread.
TINY=(--data "$PHOTOS" --val-split 0.4 --crop 32 --batch 2 --epochs 2 --steps-per-epoch 3 --threads 1 --samples 2
      --val-crops 1 --sample-size 64)
