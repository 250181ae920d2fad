// The one unit that defines the emulator's run-time functions for kiln's own targets (kiln_emu_once
// in CMakeLists.txt; the others only declare them: KILN_EMU_ENTRY in kiln/gpu/config.hpp).
#define KILN_EMU_IMPLEMENTATION
#include <kiln/gpu/gpu.hpp>
