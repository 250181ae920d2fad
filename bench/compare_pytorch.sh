#!/usr/bin/env bash
# kiln's U-Net step and inference against PyTorch's, same machine, same run: times and each row's
# peak resident memory (its own process per library, VmHWM).
#   bench/compare_pytorch.sh                      # CPU, 2 threads, 16x64^2 and 8x128^2 + one 1024x640 image (inference)
#   bench/compare_pytorch.sh --device cuda --tf32 # GPU (kiln_bench_step_gpu vs PyTorch fp32 and TF32)
#   bench/compare_pytorch.sh --configs N16_H64 --infer-configs '' --models UNetBase --steps 3
#   bench/compare_pytorch.sh --build-dir B --no-build --isa avx2  # kiln's AVX2 path (B built -march=x86-64-v3), PyTorch AVX2
#   bench/compare_pytorch.sh --glibc-malloc      # glibc's default malloc settings: PyTorch's lowest peak memory
# Installs python3-torch from Debian when missing (as root), builds kiln's
# bench target when needed (build-bench, or build-bench-gpu for --device cuda),
# and runs PyTorch with glibc's mmap of large blocks disabled (see the .py).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Debian's PyTorch lives in the system Python, not in a pyenv/venv one on PATH.
py=/usr/bin/python3
if [[ ! -x $py ]]; then py=$(command -v python3); fi
if ! "$py" -c 'import torch' 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null && [[ $py == /usr/bin/python3 ]]; then
    echo "compare_pytorch.sh: installing python3-torch (Debian) ..." >&2
    apt-get install -y python3-torch >/dev/null
  else
    py_alt=$(command -v python3 || true)
    if [[ -n $py_alt ]] && "$py_alt" -c 'import torch' 2>/dev/null; then py=$py_alt; else
      echo "compare_pytorch.sh: PyTorch is missing: apt-get install python3-torch (root), or pip install torch" >&2
      exit 1
    fi
  fi
fi
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776
exec "$py" "$here/compare_pytorch.py" "$@"
