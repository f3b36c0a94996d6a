// Private to comm/: waiting on a word of a shared-memory segment across processes (the
// shared-memory collectives' barriers and the shared-memory point-to-point rings).
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <ctime>

namespace loom::comm::shm {

// A counter in shared memory that a peer can sleep on. `sleepers` counts the processes
// inside futex_wait on `value`: whoever changes `value` makes the wake-up system call
// only when it is non-zero (seq_cst on both sides: either the changer sees the sleeper,
// or the sleeper sees the new value and does not sleep).
struct alignas(64) Counter {
  std::atomic<uint32_t> value;
  std::atomic<uint32_t> sleepers;
};

// Sleeps while *word == expected, at most timeout_ms. False on timeout.
inline bool futex_wait(std::atomic<uint32_t>* word, uint32_t expected, int timeout_ms) {
  struct timespec ts {
    timeout_ms / 1000, (timeout_ms % 1000) * 1000000L
  };
  const long rc = syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
  return !(rc == -1 && errno == ETIMEDOUT);
}

inline void futex_wake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace loom::comm::shm
