// EXPECT(cond, fmt, ...) for the patcher's unit tests: counts, prints the failing
// condition with its location and a formatted explanation, and goes on.
// EXPECT_SUMMARY() prints "N passed, N failed" and is main()'s return value.
#pragma once
#include <stdio.h>

static int g_failed, g_passed;

#define EXPECT(cond, ...)                                    \
  do {                                                       \
    if (cond) {                                              \
      ++g_passed;                                            \
    } else {                                                 \
      ++g_failed;                                            \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      printf(__VA_ARGS__);                                   \
      printf("\n");                                          \
    }                                                        \
  } while (0)

#define EXPECT_SUMMARY() (printf("%d passed, %d failed\n", g_passed, g_failed), g_failed ? 1 : 0)
