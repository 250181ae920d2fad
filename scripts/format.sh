#!/usr/bin/env bash
# The house style (.clang-format) over every C++ and CUDA source of the repository.
#   bash scripts/format.sh           reformat in place
#   bash scripts/format.sh --check   list the files that differ and exit 1 (CTest unit.format)
# clang-format 14 exactly (Debian 12's clang-format package): other versions lay some code out
# differently, so the check would disagree with itself across machines.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tool=${KILN_CLANG_FORMAT:-$(command -v clang-format-14 || true)}
[[ -n $tool ]] || { echo "format.sh: clang-format-14 not found (apt-get install clang-format-14)" >&2; exit 2; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files -- '*.hpp' '*.cpp' '*.cuh' '*.cu' '*.h' '*.inl')
else
  mapfile -t files < <(find include kernels examples tests bench fuzz -type f \
    \( -name '*.hpp' -o -name '*.cpp' -o -name '*.cuh' -o -name '*.cu' -o -name '*.h' -o -name '*.inl' \) | sort)
fi
if [[ ${1:-} == --check ]]; then
  bad=()
  for f in "${files[@]}"; do
    [[ -f $f ]] || continue
    "$tool" --style=file "$f" | cmp -s - "$f" || bad+=("$f")
  done
  if ((${#bad[@]})); then
    printf 'format.sh: not in the house style (run bash scripts/format.sh): %s\n' "${bad[@]}" >&2
    exit 1
  fi
  echo "format.sh: ${#files[@]} files in the house style"
else
  "$tool" --style=file -i "${files[@]}"
fi
