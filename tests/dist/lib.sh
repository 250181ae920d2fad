# Shared by the kiln-train tests under mpirun: bash tests/dist/<name>.sh TRAIN COLORIZE TOOL SOURCE_DIR WORK_DIR
source "$(dirname "${BASH_SOURCE[0]}")/../programs/lib.sh"
if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIPPED: mpirun is not installed (apt-get install libopenmpi-dev openmpi-bin)"
  exit 77
fi
if [[ $(ldd "$TRAIN" 2>/dev/null | grep -c libmpi) == 0 ]]; then
  echo "SKIPPED: $TRAIN was built without MPI (configure with -DKILN_MPI=ON)"
  exit 77
fi
# We may run as root (containers, CI); 2 ranks may share fewer cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
# Under AddressSanitizer: Open MPI's own allocations kept until exit are not our leaks.
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
mpi() {  # mpi RANKS CMD...
  local n=$1; shift
  mpirun -np "$n" --oversubscribe --bind-to none "$@"
}
