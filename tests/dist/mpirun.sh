#!/usr/bin/env bash
# Runs a dist test under mpirun: bash tests/dist/mpirun.sh RANKS PROGRAM [ARGS...]
# Exit 77 (ctest: skipped) when mpirun or the program is missing (a build without KILN_MPI).
# We may run as root (containers, CI): Open MPI refuses that unless told; --oversubscribe lets
# 2 ranks share fewer cores.
set -uo pipefail
ranks=$1; shift
if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIPPED: mpirun is not installed (apt-get install libopenmpi-dev openmpi-bin, then configure with -DKILN_MPI=ON)"
  exit 77
fi
if [[ ! -x $1 ]]; then
  echo "SKIPPED: $1 was not built (configure with -DKILN_MPI=ON where MPI is installed)"
  exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
# Under AddressSanitizer: Open MPI's own allocations kept until exit are not our leaks.
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
exec mpirun -np "$ranks" --oversubscribe --bind-to none "$@"
