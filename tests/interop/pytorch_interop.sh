#!/usr/bin/env bash
# Runs pytorch_interop.py with the first Python 3 that has PyTorch (Debian's python3-torch lives
# under /usr/bin/python3, which a pyenv or venv `python3` on PATH may hide); exit 77 (skipped)
# when none has it.
#   pytorch_interop.sh INTEROP_TOOL WORK_DIR [CMAKE BUILD_DIR]
# With CMAKE and BUILD_DIR the tool (an EXCLUDE_FROM_ALL target) is built first, only when PyTorch is found.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tool=$1 work=$2
for py in /usr/bin/python3 "$(command -v python3 || true)"; do
  [[ -n $py && -x $py ]] || continue
  if "$py" -c 'import torch' >/dev/null 2>&1; then
    if [[ $# -ge 4 ]]; then
      "$3" --build "$4" --target kiln_interop_tool >/dev/null ||
        { echo "pytorch_interop: building kiln_interop_tool failed" >&2; exit 1; }
    fi
    exec "$py" "$here/pytorch_interop.py" "$tool" "$work"
  fi
done
echo "pytorch_interop: skipped: PyTorch is not installed (Debian: apt-get install python3-torch)"
exit 77
