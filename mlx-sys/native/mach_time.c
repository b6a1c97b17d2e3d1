/* mlx-rs seeds its default RandomState from mach_approximate_time(), a macOS-only function.
 * Off Apple, provide it from the monotonic clock (nanoseconds, like mach time on Apple silicon). */
#include <stdint.h>
#include <time.h>

uint64_t mach_approximate_time(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
