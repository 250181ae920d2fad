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
# Under AddressSanitizer, no leak check for these runs: Open MPI's plugins (dlopen'ed, unloaded at
# MPI_Finalize) leave allocations behind whose frames LeakSanitizer can only print as
# "<unknown module>", so no suppression can name them. Memory errors are still checked, and the
# library's own code runs leak-checked in every other test.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
exec mpirun -np "$ranks" --oversubscribe --bind-to none "$@"
