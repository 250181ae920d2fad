#pragma once
// kiln::io's larger functions (image headers and decoding, safetensors planning, loading and
// checks, atomic writes, messages) are declared with KILN_IO_ENTRY and defined under
// #if KILN_IO_DEFINITIONS. They are inline, so every unit that reads or writes a file compiles
// them again (about 1 CPU-s at -O3). A program of many units may compile them once: define
// KILN_IO_SEPARATE in all its units and, in exactly one of them, also KILN_IO_IMPLEMENTATION before
// including kiln (kiln's own targets do, with the JSON: kiln_json_once in CMakeLists.txt). All of
// them need the same flags. Without the macro the library is header-only as before.
#if defined(KILN_IO_SEPARATE)
#define KILN_IO_ENTRY
#if defined(KILN_IO_IMPLEMENTATION)
#define KILN_IO_DEFINITIONS 1
#else
#define KILN_IO_DEFINITIONS 0  // declared only: defined in the KILN_IO_IMPLEMENTATION unit
#endif
#else
#define KILN_IO_ENTRY inline
#define KILN_IO_DEFINITIONS 1
#endif
