// The JSON of kiln's checkpoint files (kiln/io/safetensors_json.hpp) and kiln::io's larger
// functions (kiln/io/separate.hpp), compiled once for kiln's own targets that read or write files
// (kiln_json_once in CMakeLists.txt: the programs, the unit suite, the programs' test tool): their
// units define KILN_IO_SEPARATE_JSON and KILN_IO_SEPARATE and only declare them (several
// CPU-seconds of nlohmann's parser and writer, and about one of image and file code, saved in each
// unit that loads or saves one).
#define KILN_IO_JSON_IMPLEMENTATION
#define KILN_IO_IMPLEMENTATION
#include <kiln/io/atomic_file.hpp>
#include <kiln/io/checkpoint.hpp>
#include <kiln/io/image.hpp>
#include <kiln/io/io_error.hpp>
#include <kiln/io/pair_loader.hpp>
#include <kiln/io/safetensors.hpp>
