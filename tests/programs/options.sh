source "$(dirname "$0")/lib.sh"
# Every option that takes a number refuses what is not a finite number in range, at parse time
# (exit 2), in a short sentence naming the option; messages read as sentences.
"$TOOL" make-image 40 32 pic.png || fail "make-image"
expect_rc 0 "$TRAIN" "${TINY[@]}" --epochs 1 --out model
CK=model/latest.safetensors
short() { [[ $(wc -c <last.err) -lt 300 ]] || { show; fail "the message is $(wc -c <last.err) bytes long"; }; }

note "NaN and infinity are refused by every numeric option of kiln-train"
for opt in --lr --val-split --lr-end-fraction --step-gamma --momentum --huber-delta --weight-decay --scales; do
  for v in nan inf -inf; do
    expect_rc 2 "$TRAIN" --data "$PHOTOS" $opt $v --out o
    expect_err "kiln-train: error: $opt: '$v' is not a finite number"
  done
done
note "... and by kiln-colorize's --scale"
expect_rc 2 "$COLORIZE" --checkpoint $CK --scale nan pic.png
expect_err "kiln-colorize: error: --scale: 'nan' is not a finite number"

note "out of range: the bounds in a few digits, not 310; a negative --lr is not called non-negative"
expect_rc 2 "$TRAIN" --data "$PHOTOS" --lr -1 --out o
expect_err "--lr: '-1' is out of range: give a number greater than 0"
short
expect_rc 2 "$TRAIN" --data "$PHOTOS" --lr 0 --out o
expect_err "--lr: '0' is out of range"
expect_rc 2 "$TRAIN" --data "$PHOTOS" --val-split 2 --out o
expect_err "--val-split: '2' is out of range: give a number from 0 to 0.9"
expect_rc 2 "$TRAIN" --data "$PHOTOS" --lr 1e999 --out o
expect_err "--lr: '1e999' is not a finite number"
short

note "text where a number belongs: a sentence, not 'Value abc not in range'"
expect_rc 2 "$COLORIZE" --checkpoint $CK --max-side abc pic.png
expect_err "kiln-colorize: error: --max-side: 'abc' is not a whole number"
grep -q "not in range" last.err && fail "CLI11's wording leaked"
expect_rc 2 "$TRAIN" --data "$PHOTOS" --batch 2.5 --out o
expect_err "--batch: '2.5' is not a whole number"
expect_rc 2 "$COLORIZE" --checkpoint $CK --threads 5000 pic.png
expect_err "--threads: '5000' is out of range: give a number from 0 to 4096"

note "an input named -x.png: a hint to write ./-x.png or use --"
cp pic.png ./-x.png
expect_rc 2 "$COLORIZE" --checkpoint $CK -x.png
expect_err "'-x.png' was read as an option: to name a file that starts with '-', write ./-x.png or put -- before it"
grep -q "inputs is required" last.err && fail "CLI11's 'inputs is required' leaked"
expect_rc 0 "$COLORIZE" --checkpoint $CK --out dash -- -x.png
expect_file dash/-x.png

note "symbolic link loops: said as such, never a raw filesystem error"
ln -s loop.safetensors loop.safetensors
expect_rc 1 "$COLORIZE" --checkpoint loop.safetensors pic.png
expect_err "kiln-colorize: error: loop.safetensors: the checkpoint cannot be opened: it is a loop of symbolic links"
grep -q "filesystem error" last.err && fail "a raw filesystem error"
expect_rc 1 "$TRAIN" --resume loop.safetensors --out o
expect_err "kiln-train: error: loop.safetensors: cannot resume: the checkpoint cannot be opened: it is a loop of symbolic links"
ln -s loop.png loop.png
expect_rc 1 "$COLORIZE" --checkpoint $CK --out o loop.png
expect_err "loop.png: cannot be opened: it is a loop of symbolic links"
grep -q "no such file" last.err && fail "a symlink loop was called missing"

note "a folder without images: the folder named first, in a sentence"
mkdir -p empty
expect_rc 1 "$COLORIZE" --checkpoint $CK --out o empty
expect_err "kiln-colorize: error: empty: the folder holds no images"
expect_rc 1 "$TRAIN" --data empty --val "$PHOTOS" --crop 32 --out o
expect_err "kiln-train: error: empty: the folder holds no images"

note "a PNG cut inside its last chunk's header: 'truncated', not stb's empty reason '(stb_image: )'"
"$TOOL" make-image 40 30 whole.png && head -c $(($(stat -c %s whole.png) - 9)) whole.png >cutpng.png
expect_rc 1 "$COLORIZE" --checkpoint $CK --out o10 cutpng.png
expect_err "kiln-colorize: error: cutpng.png: cannot decode image: the file ends before its IEND chunk"
grep -q "stb_image: )" last.err && { show; fail "an empty stb_image reason"; }

note "a seed that is not a whole number"
expect_rc 2 "$TRAIN" --data "$PHOTOS" --seed -1 --out o
expect_err "--seed: '-1' is out of range"

note "a bad --max-memory"
expect_rc 2 "$COLORIZE" --checkpoint $CK --max-memory 12 pic.png
expect_err "--max-memory: '12' has no unit"
expect_rc 2 "$TRAIN" --data "$PHOTOS" --max-memory lots --out o
expect_err "--max-memory: 'lots' is not a size"

note "values a checkpoint brings in get the same checks as the command line"
"$TOOL" set-metadata $CK kiln.train.config "$("$TOOL" metadata $CK kiln.train.config | sed 's/"lr":[^,]*/"lr":-5/')" badlr.safetensors
expect_rc 1 "$TRAIN" --resume badlr.safetensors --out o7
expect_err "badlr.safetensors: cannot resume: a setting saved in it is not one kiln-train accepts.*--lr: '-5' is out of range"
"$TOOL" set-metadata $CK kiln.train.step "-3" badstep.safetensors
expect_rc 1 "$TRAIN" --resume badstep.safetensors --epochs 3 --out o8
expect_err "badstep.safetensors: cannot resume: its metadata kiln.train.step is '-3', not a non-negative number"
"$TOOL" set-metadata $CK kiln.train.schedule_position "nan" badpos.safetensors
expect_rc 1 "$TRAIN" --resume badpos.safetensors --epochs 3 --out o9
expect_err "kiln.train.schedule_position is 'nan'"
echo "OK"
