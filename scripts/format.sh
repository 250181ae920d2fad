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
  present=()
  for f in "${files[@]}"; do [[ -f $f ]] && present+=("$f"); done
  # One clang-format process for every file (a process per file cost 5x the CPU): --dry-run -Werror
  # reports each difference as "FILE:LINE:COL: error: code should be clang-formatted".
  if ! report=$("$tool" --style=file --dry-run -Werror "${present[@]}" 2>&1); then
    mapfile -t bad < <(sed -n 's/^\(.*\):[0-9]*:[0-9]*: error: .*/\1/p' <<<"$report" | sort -u)
    ((${#bad[@]})) || { echo "$report" >&2; echo "format.sh: clang-format failed" >&2; exit 1; }
    printf 'format.sh: not in the house style (run bash scripts/format.sh): %s\n' "${bad[@]}" >&2
    exit 1
  fi
  echo "format.sh: ${#files[@]} files in the house style"
else
  "$tool" --style=file -i "${files[@]}"
fi
