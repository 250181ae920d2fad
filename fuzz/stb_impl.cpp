// fuzz/stb_impl.cpp — stb's implementations compiled into the libFuzzer builds, so that the
// decoder is instrumented (coverage guidance and ASan/UBSan inside stb). Debian's prebuilt
// libstb is NOT linked into those builds (its symbols would clash). The g++ regression runners
// (fuzz/regressions.cmake) link libstb instead, like the library does.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Weverything"
#endif
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <stb/stb_image_write.h>
