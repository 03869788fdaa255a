// The project's version: here, and only here. bufpool/CMakeLists.txt, the top-level CMakeLists.txt
// and scripts/lib.sh read it from the three lines below; the header needs no build step, so the
// library works from `-I bufpool/include` or from copied headers.
#pragma once

#define BUFPOOL_VERSION_MAJOR 0
#define BUFPOOL_VERSION_MINOR 1
#define BUFPOOL_VERSION_PATCH 0

#define BUFPOOL_VERSION_STR_(x) #x
#define BUFPOOL_VERSION_STR(x) BUFPOOL_VERSION_STR_(x)
/// "MAJOR.MINOR.PATCH"
#define BUFPOOL_VERSION_STRING \
  BUFPOOL_VERSION_STR(BUFPOOL_VERSION_MAJOR) "." BUFPOOL_VERSION_STR(BUFPOOL_VERSION_MINOR) "." BUFPOOL_VERSION_STR(BUFPOOL_VERSION_PATCH)
/// MAJOR * 10000 + MINOR * 100 + PATCH, for #if comparisons
#define BUFPOOL_VERSION (BUFPOOL_VERSION_MAJOR * 10000 + BUFPOOL_VERSION_MINOR * 100 + BUFPOOL_VERSION_PATCH)
/// The compiler of the translation unit that includes this, for --version lines.
#if defined(__clang__)
#define BUFPOOL_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define BUFPOOL_COMPILER "GCC " __VERSION__
#else
#define BUFPOOL_COMPILER "unknown compiler"
#endif
