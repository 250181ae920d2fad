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
# Under AddressSanitizer, no leak check for these runs: Open MPI's plugins (dlopen'ed, unloaded at
# MPI_Finalize) leave allocations behind whose frames LeakSanitizer can only print as
# "<unknown module>", so no suppression can name them. Memory errors are still checked, and the
# library's own code runs leak-checked in every other test.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
mpi() {  # mpi RANKS CMD...
  local n=$1; shift
  mpirun -np "$n" --oversubscribe --bind-to none "$@"
}
