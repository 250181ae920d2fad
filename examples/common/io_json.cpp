// The JSON of kiln's checkpoint files (kiln/io/safetensors_json.hpp), compiled once for both
// programs: their other units define KILN_IO_SEPARATE_JSON and only declare it (several CPU-seconds
// of nlohmann's parser and writer saved in each unit that loads or saves a checkpoint).
#define KILN_IO_JSON_IMPLEMENTATION
#include <kiln/io/safetensors.hpp>
