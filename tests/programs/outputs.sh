source "$(dirname "$0")/lib.sh"
# No program path replaces a user's file without an explicit option, and every file a closing
# message names exists (docs/reliability.md, "Files").
"$TOOL" make-image 48 40 pic.png || fail "make-image"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 1 --out model
CK=model/latest.safetensors

note "kiln-colorize --out INPUT_FOLDER: refused, the originals untouched"
mkdir -p originals && "$TOOL" make-image 40 32 originals/a.png && "$TOOL" make-image 36 30 originals/b.png
cp -r originals originals-copy
expect_rc 1 "$COLORIZE" --checkpoint $CK --out originals originals
expect_err "originals/a.png: is one of the input images"
diff -r originals originals-copy >/dev/null || fail "colorizing into the input folder changed the originals"
note "... also with --overwrite, and for a single input file given by another path"
expect_rc 1 "$COLORIZE" --checkpoint $CK --out originals --overwrite originals/b.png
expect_err "is one of the input images"
expect_rc 1 "$COLORIZE" --checkpoint $CK --out ./originals/. originals/a.png
diff -r originals originals-copy >/dev/null || fail "an input was replaced"

note "an existing output is refused without --overwrite (nothing written), replaced with it"
mkdir -p col && echo "my notes" >col/pic.png
expect_rc 1 "$COLORIZE" --checkpoint $CK --out col pic.png
expect_err "col/pic.png: already exists.*--overwrite"
[[ $(cat col/pic.png) == "my notes" ]] || fail "an existing file was replaced without --overwrite"
expect_rc 0 "$COLORIZE" --checkpoint $CK --out col --overwrite pic.png
[[ $("$TOOL" image-size col/pic.png) == "48 40" ]] || fail "--overwrite did not replace col/pic.png"
note "... and the check covers every output before the first is written"
"$TOOL" make-image 30 30 zz.png
mkdir -p col2 && echo "keep" >col2/zz.png
expect_rc 1 "$COLORIZE" --checkpoint $CK --out col2 pic.png zz.png
[[ ! -e col2/pic.png ]] || fail "an output was written before a later one was refused"

note "two outputs never get one name: x.png's comparison and an input named x_compare.png"
mkdir -p pair && "$TOOL" make-image 40 32 pair/x.png && "$TOOL" make-image 36 30 pair/x_compare.png
expect_rc 0 "$COLORIZE" --checkpoint $CK --out paired --compare pair
[[ $(ls paired | wc -l) == 4 ]] || { ls paired; fail "4 distinct outputs expected for 2 inputs with --compare"; }
[[ $("$TOOL" image-size paired/x_compare.png) == "128 32" ]] || fail "x_compare.png should be x.png's comparison"

note "kiln-train into a finished run's folder: refused, the run intact"
cp model/latest.safetensors keep-latest.safetensors && cp model/metrics.jsonl keep-metrics.jsonl
expect_rc 1 "$TRAIN" "${TINY[@]}" --epochs 1 --seed 7 --out model
expect_err "model: holds another run's files (latest.safetensors, best.safetensors, metrics.jsonl"
expect_err "--resume"
expect_err "--overwrite"
cmp -s model/latest.safetensors keep-latest.safetensors || fail "latest.safetensors was replaced"
cmp -s model/metrics.jsonl keep-metrics.jsonl || fail "metrics.jsonl was changed"
note "... --overwrite replaces it, and leaves none of the old run's files behind"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 2 --stop-at-step 1 --overwrite --out model
[[ ! -e model/best.safetensors ]] || fail "the old run's best.safetensors was left next to the new run's files"
[[ $("$TOOL" metadata model/latest.safetensors kiln.train.step) == 1 ]] || fail "the new run's checkpoint is not there"

note "a closing message names only files that exist (stopped before the first epoch's end)"
grep -q "files in model/: latest.safetensors, metrics.jsonl$" last.out || { show; fail "the file list is not what is on disk"; }
for f in $(grep "files in" last.out | sed 's/.*: //; s/,//g'); do [[ -e model/$f ]] || fail "the summary names model/$f, which does not exist"; done

note "resuming a finished run says so, trains nothing and changes nothing"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 1 --out done
cp done/latest.safetensors done-copy.safetensors
expect_rc 0 "$TRAIN" --resume --out done
expect_out "the run is already finished: it trained 1 of 1 epochs"
expect_out "--epochs"
grep -q "summary" last.out && { show; fail "a finished run printed a summary comparing old scores with a new baseline"; }
cmp -s done/latest.safetensors done-copy.safetensors || fail "resuming a finished run changed its checkpoint"
note "... also when it stopped a step into an epoch that --epochs now leaves out"
expect_rc 0 "$TRAIN" "${TINY[@]}" --stop-at-step 4 --out past
cp past/latest.safetensors past-copy.safetensors
expect_rc 0 "$TRAIN" --resume --out past --epochs 1
expect_out "the run is already finished: it trained 1 of 1 epochs (global step 4) and 1 steps of the next"
cmp -s past/latest.safetensors past-copy.safetensors || fail "resuming a finished run changed its checkpoint"

note "a resumed run removes its own stale temporaries, never a user's file named like one"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 2 --stop-at-step 1 --out tmps
echo "mine" >tmps/notes.tmp.999999999 && echo "stale" >tmps/latest.safetensors.tmp.999999999
expect_rc 0 "$TRAIN" --resume --out tmps --stop-at-step 2
[[ -e tmps/notes.tmp.999999999 ]] || fail "the user's tmps/notes.tmp.999999999 was deleted"
[[ ! -e tmps/latest.safetensors.tmp.999999999 ]] || fail "a stale temporary of latest.safetensors was left"

note "a NaN stop names only a checkpoint that exists (resumed from a file outside --out)"
expect_rc 0 "$TRAIN" "${TINY[@]}" --stop-at-step 2 --out first
cp first/latest.safetensors elsewhere.safetensors
expect_rc 1 "$TRAIN" --resume elsewhere.safetensors --out second --debug-inject-nan grad:head.weight@3
expect_err "elsewhere.safetensors keeps the last good state (global step 2)"
grep -q "second/latest.safetensors keeps" last.err && fail "the message names second/latest.safetensors, which was never written"
note "... and a fresh run that fails before its first save says that none was written"
expect_rc 1 "$TRAIN" "${TINY[@]}" --out third --debug-inject-nan grad:head.weight@1
expect_err "no checkpoint of this run was written yet"

note "--out inside a data folder, --val equal to --data, a folder given twice: refused"
mkdir -p data && cp "$PHOTOS"/*.jpg data/ 2>/dev/null || cp "$PHOTOS"/* data/
expect_rc 2 "$TRAIN" --data data --val-split 0.4 --crop 32 --out data/run
expect_err "--out: 'data/run' lies inside the training folder 'data'"
[[ ! -e data/run ]] || fail "the refused run created data/run"
expect_rc 2 "$TRAIN" --data data --val data --crop 32 --out o1
expect_err "--val: 'data' is the same folder as 'data' (--data): validation images must not be training images"
expect_rc 2 "$TRAIN" --data data ./data/ --crop 32 --out o2
expect_err "is the same folder as"
note "--data-repeat: one count per --data folder, applied after the validation split"
mkdir -p other && cp data/*.jpg other/ 2>/dev/null
expect_rc 2 "$TRAIN" --data data other --data-repeat 3 --crop 32 --out o4
expect_err "--data-repeat: 1 numbers for 2 --data folders; give one per folder"
expect_rc 2 "$TRAIN" --data data --data-repeat 0 --crop 32 --out o5
expect_err "--data-repeat"
n_data=$(find data -maxdepth 1 -name '*.jpg' | wc -l)
expect_rc 0 "$TRAIN" --data data --val other --data-repeat 3 --crop 32 --batch 2 --epochs 1 --steps-per-epoch 1 \
  --threads 1 --samples 0 --out o6
expect_out "data: $((3 * n_data)) training images; $n_data validation images"
expect_rc 0 "$TRAIN" --data data --val-split 0.4 --data-repeat 2 --crop 32 --batch 2 --epochs 1 --steps-per-epoch 1 \
  --threads 1 --samples 0 --out o7
n_val=$(sed -n 's/.*training images; \([0-9]*\) validation images.*/\1/p' last.out)
expect_out "data: $((2 * (n_data - n_val))) training images; $n_val validation images"
mkdir -p data/sub && cp data/*.jpg data/sub/ 2>/dev/null
expect_rc 2 "$TRAIN" --data data --val data/sub --crop 32 --out o3
expect_err "'data/sub' lies inside 'data' (--data)"
echo "OK"
