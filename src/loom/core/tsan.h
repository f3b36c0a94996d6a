// Private: ThreadSanitizer happens-before annotations, for hand-offs that go through
// libraries TSan cannot see into (ZeroMQ's lock-free queues, libtorch's futures).
//
// Contract: call release(p) in the thread that hands the object at `p` over, after its
// last write and before the hand-off; call acquire(p) in the thread that takes it over,
// after the hand-off and before its first access. The hand-off itself must really order
// the two (the library guarantees it; these calls only tell TSan). Outside a
// -fsanitize=thread build both compile to nothing.
#pragma once

#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace loom::tsan {

inline void release([[maybe_unused]] const void* p) {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(const_cast<void*>(p));
#endif
}

inline void acquire([[maybe_unused]] const void* p) {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(const_cast<void*>(p));
#endif
}

}  // namespace loom::tsan
