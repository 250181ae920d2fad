// The kernel table's layer and colour cases (tests/emu/kernel_cases.hpp declares the add_*_cases
// functions), compiled apart from test_kernels_table.cpp so that no unit is over 40 CPU-s.
// No test case here: like the other parts (cases/*.cpp) it is linked into every binary that runs
// the table (emu, emucheck, gpu suites), and lives outside tests/emu/*.cpp so that no ctest entry
// is made for it.
#include "emu/kernel_cases.hpp"

#include "emu/kernel_cases_layers.hpp"

#include "emu/kernel_cases_colour.hpp"
