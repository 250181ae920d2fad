#!/usr/bin/env bash
# Runs pytorch_interop.py with the first Python 3 that has PyTorch (Debian's python3-torch lives
# under /usr/bin/python3, which a pyenv or venv `python3` on PATH may hide); exit 77 (skipped)
# when none has it.
#   pytorch_interop.sh INTEROP_TOOL WORK_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for py in /usr/bin/python3 "$(command -v python3 || true)"; do
  [[ -n $py && -x $py ]] || continue
  if "$py" -c 'import torch' >/dev/null 2>&1; then
    exec "$py" "$here/pytorch_interop.py" "$@"
  fi
done
echo "pytorch_interop: skipped: PyTorch is not installed (Debian: apt-get install python3-torch)"
exit 77
