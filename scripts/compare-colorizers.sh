#!/usr/bin/env bash
# Compares colorizer checkpoints on the same validation photos with kiln-colorize --compare
# (MSE(ab), PSNR and colourfulness against the originals, with the grey baseline), and puts
# grey | kiln | original rows of a few photos, one row per checkpoint, into one picture.
#   scripts/compare-colorizers.sh OUT KILN_COLORIZE NAME=CHECKPOINT... [-- VAL_FOLDER...]
# Defaults: the default and street presets' validation folders of data/photos; inference at
# --max-side 384 (the longest side the training loader caches); 1 thread (THREADS=N for more).
# STRIDE=N takes every N-th image of each folder (sorted by name, starting with the first).
# REUSE=1 keeps a checkpoint's results already in OUT (a log with its mean line): checkpoints can
# be compared by separate runs in parallel, then once more with REUSE=1 for the summary and picture.
# Writes OUT/<name>/<set>/ (the comparison PNGs), OUT/<name>-<set>.log, OUT/summary.txt
# (every mean line) and OUT/compare.jpg (ffmpeg).
set -euo pipefail
out=$1 colorize=$2
shift 2
models=()
while (($#)) && [[ $1 != -- ]]; do models+=("$1"); shift; done
(($#)) && shift
sets=("$@")
((${#sets[@]})) || sets=(data/photos/default/val data/photos/street/val)
((${#models[@]})) || { echo "usage: $0 OUT KILN_COLORIZE NAME=CHECKPOINT... [-- VAL_FOLDER...]" >&2; exit 2; }
mkdir -p "$out"
: >"$out/summary.txt"
for m in "${models[@]}"; do
  name=${m%%=*} ckpt=${m#*=}
  for set in "${sets[@]}"; do
    tag=$(basename "$(dirname "$set")")
    if [[ ${REUSE:-0} == 1 ]] && grep -q '^mean over' "$out/$name-$tag.log" 2>/dev/null; then
      echo "$name $tag: $(grep '^mean over' "$out/$name-$tag.log")" | tee -a "$out/summary.txt"
      continue
    fi
    mapfile -t files < <(find "$set" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | sort |
      awk -v s="${STRIDE:-1}" '(NR - 1) % s == 0')
    "$colorize" --checkpoint "$ckpt" --threads "${THREADS:-1}" --max-side 384 --compare --overwrite \
      --out "$out/$name/$tag" "${files[@]}" >"$out/$name-$tag.log"
    echo "$name $tag: $(grep '^mean over' "$out/$name-$tag.log")" | tee -a "$out/summary.txt"
  done
done
# The picture: three photos of the first set, a row per checkpoint for each.
first=$(basename "$(dirname "${sets[0]}")")
name0=${models[0]%%=*}
mapfile -t picks < <(ls "$out/$name0/$first"/*_compare.png | awk 'NR == 2 || NR == 7 || NR == 13')
inputs=()
for p in "${picks[@]}"; do
  for m in "${models[@]}"; do inputs+=(-i "$out/${m%%=*}/$first/$(basename "$p")"); done
done
n=$((${#inputs[@]} / 2))
filter=""
for ((i = 0; i < n; ++i)); do filter+="[$i:v]scale=1152:-2[s$i];"; done
for ((i = 0; i < n; ++i)); do filter+="[s$i]"; done
filter+="vstack=inputs=$n"
ffmpeg -nostdin -hide_banner -loglevel error -y "${inputs[@]}" -filter_complex "$filter" -q:v 5 "$out/compare.jpg"
echo "picture: $out/compare.jpg (rows: ${picks[*]##*/}, each as ${models[*]%%=*})"
