// The dist tests' main: MPI first (the tests run under mpirun -np 2), then doctest on every rank.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <kiln/dist/mpi.hpp>

int main(int argc, char** argv) {
  kiln::dist::MpiSession mpi(&argc, &argv);
  doctest::Context context(argc, argv);
  const int failed = context.run();
  // A failure on one rank fails the whole job: mpirun reports the first non-zero exit.
  return failed;
}
