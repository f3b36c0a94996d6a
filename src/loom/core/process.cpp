#include "loom/core/dist_env.h"

#include <dlfcn.h>

#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

namespace loom {

void init_process(const ProcessOptions& options) {
  static std::once_flag once;
  std::call_once(once, [&] {
    const char* env = std::getenv("LOOM_MALLOC_TUNING");
    const bool tune = options.tune_malloc && !(env && std::strcmp(env, "0") == 0);
    if (tune) {
      // glibc refuses an mmap threshold above half its heap size (32 MiB on 64-bit), so
      // buffers up to 32 MiB come from the heap and are reused; the heap top is returned
      // to the OS only once 1 GiB is free.
      constexpr int kMmapThreshold = 32 << 20;
      constexpr int kTrimThreshold = 1 << 30;
      if (mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1) mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
    }
  });
}

}  // namespace loom

namespace loom {

void set_blas_threads(int threads) {
  using SetThreads = void (*)(int);
  static const auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set != nullptr && threads >= 1) set(threads);
}

}  // namespace loom
