// The JSON of kiln's checkpoint files (kiln/io/safetensors_json.hpp), compiled once for kiln's own
// targets that read or write checkpoints (kiln_json_once in CMakeLists.txt: the programs, the unit
// suite, the programs' test tool): their units define KILN_IO_SEPARATE_JSON and only declare it
// (several CPU-seconds of nlohmann's parser and writer saved in each unit that loads or saves one).
#define KILN_IO_JSON_IMPLEMENTATION
#include <kiln/io/safetensors.hpp>
