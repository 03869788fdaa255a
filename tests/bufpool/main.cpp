// doctest's main for the bufpool tests; every TEST_CASE is discovered as its own ctest test.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
