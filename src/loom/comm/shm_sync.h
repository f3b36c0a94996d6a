// Private to comm/: waiting on a word of a shared-memory segment across processes (the
// shared-memory collectives' barriers and the shared-memory point-to-point rings).
#pragma once

#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
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

// True when process `pid` (a peer's, from the segment) no longer exists.
inline bool process_exited(int32_t pid) { return kill(pid, 0) == -1 && errno == ESRCH; }

// Waits until done(c.value) holds: spins until `spin_until`, then sleeps on the
// counter's futex in slices of 50 ms, calling on_idle() after each slice that no wake-up
// ended. on_idle ends the wait by throwing (a peer that exited, the deadline): this has
// no timeout of its own.
template <typename Done, typename OnIdle>
void wait_until(Counter& c, Done done, std::chrono::steady_clock::time_point spin_until, OnIdle on_idle) {
  for (int spins = 1;; ++spins) {
    const uint32_t seen = c.value.load(std::memory_order_acquire);
    if (done(seen)) return;
    // (the clock is read once every 64 pauses, about a microsecond)
    if (spins % 64 != 0 || std::chrono::steady_clock::now() < spin_until) {
      cpu_relax();
      continue;
    }
    c.sleepers.fetch_add(1);  // seq_cst, then the kernel rechecks c.value: see Counter
    const bool woken = futex_wait(&c.value, seen, 50);
    c.sleepers.fetch_sub(1);
    if (!woken) on_idle();
  }
}

}  // namespace loom::comm::shm
