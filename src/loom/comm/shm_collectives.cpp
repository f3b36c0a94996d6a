#include "loom/comm/shm_collectives.h"

#include <ATen/core/ivalue.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "loom/comm/queued_work.h"
#include "loom/comm/shm_p2p.h"
#include "loom/comm/shm_sync.h"
#include "loom/comm/sum_kernels.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/core/tsan.h"

namespace loom::comm {

namespace {

constexpr uint64_t kMagic = 0x346d68736d6f6f6cULL;  // "loomshm4"
// How long a barrier spins on a peer's counter before it sleeps on the futex. Waking a
// sleeper costs a system call on each side and a scheduler hop (tens of microseconds in
// this VM); a peer that is running arrives within a few microseconds. With more ranks
// than CPUs (oversubscribed) a peer is often not running, and spinning only keeps it
// off the CPU it needs: then a barrier spins 64 pauses (about a microsecond) and sleeps
// (bench/allreduce_busbw: 3-4 ranks on 2 CPUs lost up to 1.5x at 4-64 KiB spinning).
constexpr auto kSpin = std::chrono::microseconds(20);
// The spin of an operation run by a waiting thread (ShmCollectives::Impl::help): that
// thread has nothing else to do, and one that sleeps waits for its wake-up (a scheduling
// delay of up to ~0.1 ms on a busy 2-core machine). Issue 19: docs/performance.md.
constexpr auto kSpinWaiting = std::chrono::microseconds(1000);
constexpr int kMaxRanks = 64;

using shm::Counter;

struct Header {
  uint64_t magic;
  uint32_t size;
  uint32_t unused;
  uint64_t capacity;
  uint64_t ring_bytes;  // of each point-to-point ring (shm_p2p.h); 0: none
  int32_t pid[kMaxRanks];
  Counter arrived[kMaxRanks];  // barriers passed, per rank
};

size_t header_bytes() { return (sizeof(Header) + 4095) / 4096 * 4096; }

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// Ranks that agree on this can share a POSIX shared-memory segment.
std::string machine_identity() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  char ns[256] = {0};
  if (readlink("/proc/self/ns/mnt", ns, sizeof(ns) - 1) < 0) ns[0] = 0;
  char ipc[256] = {0};
  if (readlink("/proc/self/ns/ipc", ipc, sizeof(ipc) - 1) < 0) ipc[0] = 0;
  // Ranks in different network namespaces are kept apart too: tests use namespaces as
  // separate hosts, and their traffic must really cross the network.
  char net[256] = {0};
  if (readlink("/proc/self/ns/net", net, sizeof(net) - 1) < 0) net[0] = 0;
  return fmt::format("{}|{}|{}|{}|{}", read_first_line("/proc/sys/kernel/random/boot_id"), host, ns, ipc, net);
}

std::atomic<int> copy_out_pause_rank{-1};  // set_copy_out_pause_for_tests
std::atomic<int64_t> copy_out_pause_us{0};

using shm::futex_wake;

std::string store_get(c10d::Store& store, const std::string& key) {
  const auto v = store.get(key);
  return std::string(v.begin(), v.end());
}
void store_set(c10d::Store& store, const std::string& key, const std::string& value) {
  store.set(key, std::vector<uint8_t>(value.begin(), value.end()));
}

}  // namespace

struct ShmCollectives::Impl {
  int rank = 0, size = 0;
  std::string group;
  std::vector<int> global_ranks;
  std::chrono::milliseconds timeout{0};
  void* base = MAP_FAILED;
  int fd = -1;  // the segment's, kept open: the rings are allocated when first used
  size_t bytes = 0;
  Header* header = nullptr;
  char* slots = nullptr;   // size x capacity
  char* result = nullptr;  // capacity
  uint64_t capacity = 0;
  uint64_t ring_bytes = 0;            // of each point-to-point ring; 0: none
  std::unique_ptr<ShmP2p> p2p;        // the rings, from the page after the result area (shm_p2p.h), or null
  uint32_t generation = 0;            // barriers passed by this rank
  bool oversubscribed = false;        // more ranks than CPUs: barriers do not spin
  std::chrono::microseconds spin{0};  // this operation's: kSpin, kSpinWaiting or 0
  const char* op_name = "allreduce";  // the running operation, for errors

  using Kind = ShmCollectives::Kind;
  struct Op {
    Kind kind = Kind::allreduce;
    std::vector<at::Tensor> tensors;
    std::vector<int64_t> counts;  // reduce_scatter, all_gather: elements per rank
    c10::intrusive_ptr<QueuedWork> work;
  };
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<Op> queue;
  std::atomic<bool> stop{false};
  bool executing = false;     // an operation is running (on the engine's thread or a helper)
  std::exception_ptr broken;  // the first failure; every later op fails with it
  std::thread thread;

  ~Impl() {
    p2p.reset();  // before the rings it points into go
    if (base != MAP_FAILED) munmap(base, bytes);
    if (fd >= 0) close(fd);
  }

  void barrier() {
    ++generation;
    // seq_cst store, then load: with the sleeper's seq_cst increment before its
    // futex_wait (which rechecks the value in the kernel), either we see the sleeper or
    // it sees the new value and does not sleep.
    Counter& mine = header->arrived[rank];
    mine.value.store(generation);
    if (mine.sleepers.load() != 0) futex_wake(&mine.value);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    // One spin budget for the whole barrier (not one per peer): a peer that arrives later
    // than that is asleep or descheduled, and the rest are waited for on the futex.
    const auto spin_until = std::chrono::steady_clock::now() + spin;
    for (int r = 0; r < size; ++r) {
      if (r == rank) continue;
      shm::wait_until(
          header->arrived[r], [&](uint32_t seen) { return static_cast<int32_t>(seen - generation) >= 0; }, spin_until,
          [&] {
            if (stop.load()) LOOM_THROW(CommError, "{} on group '{}' (shared memory): stopped", op_name, group);
            if (shm::process_exited(header->pid[r])) {
              LOOM_THROW(CommError, "{} on group '{}' (shared memory) failed: rank {} (pid {}) exited", op_name, group,
                         global_ranks[r], header->pid[r]);
            }
            if (std::chrono::steady_clock::now() > deadline) {
              LOOM_THROW(TimeoutError, "{} on group '{}' (shared memory) timed out after {} ms waiting for rank {}",
                         op_name, group, timeout.count(), global_ranks[r]);
            }
          });
    }
  }

  // Allreduce of one window (`count` elements at `data`, at most one slot): each rank
  // copies the window but its own partition into its slot; barrier; rank r sums
  // partition r over the ranks in rank order (its own term straight from `data`), into
  // `data` and into the result area; barrier; each copies the other partitions out of
  // the result area. Per rank that reads and writes (N-1)/N of the window twice and
  // sums one partition, where copying the whole window in and out (the algorithm
  // before 2026-12-01) moved it twice plus the partition. docs/performance.md counts it.
  template <typename T>
  void allreduce_window(T* data, size_t count) {
    const size_t lo = count * rank / size, hi = count * (rank + 1) / size;
    T* mine = reinterpret_cast<T*>(slots + rank * capacity);
    std::memcpy(mine, data, lo * sizeof(T));
    std::memcpy(mine + hi, data + hi, (count - hi) * sizeof(T));
    barrier();
    std::array<const T*, kMaxRanks> in{};
    for (int r = 0; r < size; ++r) in[r] = (r == rank ? data : reinterpret_cast<const T*>(slots + r * capacity)) + lo;
    T* out = reinterpret_cast<T*>(result);
    sum_in_order(out + lo, data + lo, in.data(), size, hi - lo);
    barrier();
    // Note [result area]: no barrier follows this copy-out, so the next operation must
    // not write the result area before its own first barrier (an all-gather that did lost
    // a slow peer's sums: all_gather below).
    if (copy_out_pause_rank.load(std::memory_order_relaxed) == rank) {
      std::this_thread::sleep_for(std::chrono::microseconds(copy_out_pause_us.load()));
    }
    std::memcpy(data, out, lo * sizeof(T));
    std::memcpy(data + hi, out + hi, (count - hi) * sizeof(T));
  }

  void execute(std::vector<at::Tensor>& tensors) {
    for (auto& t : tensors) {
      char* data = static_cast<char*>(t.data_ptr());
      const size_t n = t.nbytes(), element = t.element_size();
      for (size_t off = 0; off < n; off += capacity) {
        const size_t len = std::min<size_t>(capacity, n - off);
        if (t.scalar_type() == at::kFloat) {
          allreduce_window(reinterpret_cast<float*>(data + off), len / element);
        } else {
          allreduce_window(reinterpret_cast<double*>(data + off), len / element);
        }
      }
    }
  }

  // Note [sharded windows]: window k of a reduce_scatter or all_gather holds the k-th
  // piece of every rank's range (`piece` elements of each), so in every window each
  // rank copies N-1 pieces and handles its own, as allreduce's windows split the work.
  // Windows over the buffer in order (before 2026-12-01) gave a window's work to the
  // owner of the range it fell in while the others waited at the barrier: rs+ag cost
  // 2.4-2.7 allreduces at 2 ranks from 4 MiB up. Every rank passes the same counts, so
  // all make the same windows.
  //
  // reduce_scatter: each rank copies the others' pieces into its slot; barrier; each
  // sums its own piece over the slots in rank order, its own term from its buffer, as
  // allreduce_window does, so its range is bitwise what the allreduce gives there;
  // barrier (before the next window or operation overwrites the slots).
  template <typename T>
  void reduce_scatter(T* data, const std::vector<int64_t>& offsets, const std::vector<int64_t>& counts) {
    const int64_t piece = static_cast<int64_t>(capacity / sizeof(T)) / size;
    const int64_t most = *std::max_element(counts.begin(), counts.end());
    T* mine = reinterpret_cast<T*>(slots + rank * capacity);
    for (int64_t k = 0; k < most; k += piece) {
      for (int r = 0; r < size; ++r) {
        if (r == rank) continue;
        const int64_t n = std::clamp<int64_t>(counts[r] - k, 0, piece);
        std::memcpy(mine + r * piece, data + offsets[r] + k, n * sizeof(T));
      }
      barrier();
      std::array<const T*, kMaxRanks> in{};
      for (int r = 0; r < size; ++r) {
        in[r] = r == rank ? data + offsets[rank] + k : reinterpret_cast<const T*>(slots + r * capacity) + rank * piece;
      }
      const int64_t n = std::clamp<int64_t>(counts[rank] - k, 0, piece);
      sum_in_order(data + offsets[rank] + k, static_cast<T*>(nullptr), in.data(), size, static_cast<size_t>(n));
      barrier();
    }
  }

  // all_gather in windows of one slot per rank (Note [sharded windows]): each rank
  // copies its piece into its own slot; barrier; each copies the others' pieces out of
  // their slots; barrier. Only the slots (Note [result area]): an allreduce's ranks read
  // the result area after its last barrier, so an operation that follows one must not
  // write the result area before its own first barrier (an all_gather that used the result area as a window
  // overwrote a slow peer's allreduce result: a ZeRO-2 run's trailer, 3 runs in 48).
  template <typename T>
  void all_gather(T* data, const std::vector<int64_t>& offsets, const std::vector<int64_t>& counts) {
    const int64_t piece = static_cast<int64_t>(capacity / sizeof(T));
    const int64_t most = *std::max_element(counts.begin(), counts.end());
    for (int64_t k = 0; k < most; k += piece) {
      const int64_t own = std::clamp<int64_t>(counts[rank] - k, 0, piece);
      std::memcpy(reinterpret_cast<T*>(slots + rank * capacity), data + offsets[rank] + k, own * sizeof(T));
      barrier();
      for (int r = 0; r < size; ++r) {
        if (r == rank) continue;
        const int64_t n = std::clamp<int64_t>(counts[r] - k, 0, piece);
        std::memcpy(data + offsets[r] + k, reinterpret_cast<const T*>(slots + r * capacity), n * sizeof(T));
      }
      barrier();
    }
  }

  void execute_sharded(Op& op) {
    at::Tensor& t = op.tensors.at(0);
    std::vector<int64_t> offsets(size, 0);
    for (int r = 1; r < size; ++r) offsets[r] = offsets[r - 1] + op.counts[r - 1];
    const bool reduce = op.kind == Kind::reduce_scatter;
    if (t.scalar_type() == at::kFloat) {
      reduce ? reduce_scatter(t.data_ptr<float>(), offsets, op.counts)
             : all_gather(t.data_ptr<float>(), offsets, op.counts);
    } else {
      reduce ? reduce_scatter(t.data_ptr<double>(), offsets, op.counts)
             : all_gather(t.data_ptr<double>(), offsets, op.counts);
    }
  }

  // Runs one operation on the calling thread (the engine's, or a waiter's: help(), then
  // `waiting`) and completes its work. Only one thread runs operations at a time (`executing`).
  void run_op(Op& op, bool waiting) {
    spin = oversubscribed ? std::chrono::microseconds(0) : waiting ? kSpinWaiting : kSpin;
    std::exception_ptr error = broken;
    if (!error) {
      try {
        op_name = op.kind == Kind::allreduce        ? "allreduce"
                  : op.kind == Kind::reduce_scatter ? "reduce_scatter"
                                                    : "all_gather";
        if (op.kind == Kind::allreduce) {
          execute(op.tensors);
        } else {
          execute_sharded(op);
        }
      } catch (...) {
        error = broken = std::current_exception();
      }
    }
    op.tensors.clear();
    op.work->complete(error);
  }

  void run() {
    while (true) {
      Op op;
      {
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return stop.load() || (!queue.empty() && !executing); });
        if (queue.empty() || executing) return;  // stopped (a helper finishes its own operation)
        op = std::move(queue.front());
        queue.pop_front();
        executing = true;
      }
      run_op(op, /*waiting=*/false);
      std::lock_guard<std::mutex> lock(mutex);
      executing = false;
    }
  }

  // A thread waiting for `work`: while the engine's thread is not running an operation,
  // run the queued ones, in order, up to and including `work`, here. A step's last
  // bucket, waited for as soon as it is launched, then costs no hand-off to the engine's
  // thread and back (each a wake-up that waits for a core on a busy machine).
  void help(QueuedWork& work) {
    std::unique_lock<std::mutex> lock(mutex);
    while (!work.isCompleted() && !executing && !stop.load() && !queue.empty()) {
      Op op = std::move(queue.front());
      queue.pop_front();
      executing = true;
      lock.unlock();
      run_op(op, /*waiting=*/true);
      lock.lock();
      executing = false;
    }
    if (!queue.empty()) cv.notify_one();  // the rest is the engine thread's again
  }
};

ShmCollectives::ShmCollectives(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

c10::intrusive_ptr<QueuedWork> ShmCollectives::new_work() {
  auto work = c10::make_intrusive<QueuedWork>();
  // Weak: a work may outlive the group; then there is nothing left to help.
  work->set_helper([weak = std::weak_ptr<Impl>(impl_)](QueuedWork& w) {
    if (auto impl = weak.lock()) impl->help(w);
  });
  return work;
}

ShmP2p* ShmCollectives::p2p() { return impl_->p2p.get(); }

int64_t ShmCollectives::allocated_bytes() const {
  struct stat st {};
  return fstat(impl_->fd, &st) == 0 ? static_cast<int64_t>(st.st_blocks) * 512 : 0;
}

void set_copy_out_pause_for_tests(int rank, std::chrono::microseconds pause) {
  copy_out_pause_us.store(pause.count());
  copy_out_pause_rank.store(rank);
}

ShmCollectives::~ShmCollectives() {
  {
    // Under the mutex: run() tests `stop` under it, then sleeps. Stored outside, the
    // store and the notification could both fall between that test and the sleep, and
    // join() would wait forever (found by the ThreadSanitizer run, as a hung test).
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stop.store(true);
  }
  impl_->cv.notify_all();
  impl_->thread.join();
  for (auto& op : impl_->queue) {
    op.work->complete(std::make_exception_ptr(
        CommError(fmt::format("allreduce on group '{}' (shared memory): the group was destroyed", impl_->group),
                  __FILE__, __LINE__)));
  }
}

bool ShmCollectives::accepts(const std::vector<at::Tensor>& tensors) {
  for (const auto& t : tensors) {
    if (!t.defined() || !t.device().is_cpu() || t.layout() != at::kStrided || !t.is_contiguous() ||
        (t.scalar_type() != at::kFloat && t.scalar_type() != at::kDouble)) {
      return false;
    }
  }
  return !tensors.empty();
}

c10::intrusive_ptr<c10d::Work> ShmCollectives::allreduce(std::vector<at::Tensor> tensors) {
  auto work = new_work();
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->queue.push_back({Kind::allreduce, std::move(tensors), {}, work});
  }
  impl_->cv.notify_one();
  return work;
}

c10::intrusive_ptr<c10d::Work> ShmCollectives::enqueue(Kind kind, at::Tensor buffer, std::vector<int64_t> counts) {
  auto work = new_work();
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Impl::Op op;
    op.kind = kind;
    op.tensors.push_back(std::move(buffer));
    op.counts = std::move(counts);
    op.work = work;
    impl_->queue.push_back(std::move(op));
  }
  impl_->cv.notify_one();
  return work;
}

c10::intrusive_ptr<c10d::Work> ShmCollectives::reduce_scatter(at::Tensor buffer, std::vector<int64_t> counts) {
  return enqueue(Kind::reduce_scatter, std::move(buffer), std::move(counts));
}

c10::intrusive_ptr<c10d::Work> ShmCollectives::all_gather(at::Tensor buffer, std::vector<int64_t> counts) {
  return enqueue(Kind::all_gather, std::move(buffer), std::move(counts));
}

std::unique_ptr<ShmCollectives> ShmCollectives::connect(c10d::Store& store, int rank, int size,
                                                        const std::string& group_name,
                                                        const std::vector<int>& global_ranks,
                                                        std::chrono::milliseconds timeout, Options options) {
  if (size < 2 || size > kMaxRanks) return nullptr;
  const bool enabled = options.enabled;
  // 1. Are all ranks on this machine (and do they all want it)?
  store_set(store, "loom/shm/id/" + std::to_string(rank), enabled ? machine_identity() : "off");
  const std::string mine = enabled ? machine_identity() : "off";
  bool same = enabled;
  for (int r = 0; r < size; ++r) same = same && store_get(store, "loom/shm/id/" + std::to_string(r)) == mine;
  if (!same) return nullptr;  // every rank read the same identities: the same decision

  auto impl = std::make_unique<Impl>();
  impl->rank = rank;
  impl->size = size;
  impl->group = group_name;
  impl->global_ranks = global_ranks;
  impl->timeout = timeout;
  // The CPUs this process may run on (its affinity mask), as a proxy for the machine's.
  cpu_set_t cpus;
  const int ncpu = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  impl->oversubscribed = size > ncpu;
  // At least one double per rank per window (Note [sharded windows]).
  impl->capacity = std::max<uint64_t>(static_cast<uint64_t>(options.capacity_bytes) / 64 * 64, 64 * kMaxRanks);
  const size_t p2p_bytes = ShmP2p::region_bytes(size, options.p2p_ring_bytes);
  impl->ring_bytes = p2p_bytes > 0 ? static_cast<uint64_t>(options.p2p_ring_bytes) : 0;
  // The rings start on a page (their pages are mapped in bulk: ShmP2p's prefault).
  const size_t p2p_offset = (header_bytes() + (size + 1) * impl->capacity + 4095) / 4096 * 4096;
  impl->bytes = p2p_offset + p2p_bytes;

  // 2. Rank 0 creates the segment, everyone maps it.
  std::string name;
  bool ok = true;
  if (rank == 0) {
    std::random_device rd;
    name = fmt::format("/loom-{}-{:x}", getpid(), (static_cast<uint64_t>(rd()) << 32) | rd());
    const int fd = impl->fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    // Allocated now, not page by page on first touch: a /dev/shm too small for it (a
    // container's 64 MiB) then means Gloo, where a touch past its end would be SIGBUS.
    // Of the rings, only their headers and first pages: the rest of a ring is allocated
    // by its sender when it first sends (most pairs of a group never do).
    ok = fd >= 0 && ftruncate(fd, static_cast<off_t>(impl->bytes)) == 0 &&
         posix_fallocate(fd, 0, static_cast<off_t>(p2p_offset)) == 0 &&
         (p2p_bytes == 0 || ShmP2p::allocate_fixed(fd, p2p_offset, size, options.p2p_ring_bytes));
    if (ok) impl->base = mmap(nullptr, impl->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ok = ok && impl->base != MAP_FAILED;
    if (ok) {
      impl->header = static_cast<Header*>(impl->base);
      impl->header->size = static_cast<uint32_t>(size);
      impl->header->capacity = impl->capacity;
      impl->header->ring_bytes = impl->ring_bytes;
      for (auto& c : impl->header->arrived) {
        c.value.store(0);
        c.sleepers.store(0);
      }
      impl->header->magic = kMagic;
    } else if (fd >= 0) {
      shm_unlink(name.c_str());
    }
    store_set(store, "loom/shm/name", ok ? name : "");
  } else {
    name = store_get(store, "loom/shm/name");
    ok = !name.empty();
    const int fd = impl->fd = ok ? shm_open(name.c_str(), O_RDWR, 0600) : -1;
    ok = fd >= 0;
    if (ok) impl->base = mmap(nullptr, impl->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ok = ok && impl->base != MAP_FAILED;
    if (ok) {
      impl->header = static_cast<Header*>(impl->base);
      ok = impl->header->magic == kMagic && impl->header->size == static_cast<uint32_t>(size) &&
           impl->header->capacity == impl->capacity && impl->header->ring_bytes == impl->ring_bytes;
    }
  }
  if (ok) impl->header->pid[rank] = static_cast<int32_t>(getpid());
  // 3. Use it only if every rank could; the name goes as soon as all have mapped it.
  store_set(store, "loom/shm/ok/" + std::to_string(rank), ok ? "1" : "0");
  bool all_ok = true;
  for (int r = 0; r < size; ++r) all_ok = all_ok && store_get(store, "loom/shm/ok/" + std::to_string(r)) == "1";
  if (rank == 0 && !name.empty()) shm_unlink(name.c_str());
  if (!all_ok) {
    log::debug("group '{}': shared-memory allreduce unavailable, using Gloo", group_name);
    return nullptr;
  }
  impl->slots = static_cast<char*>(impl->base) + header_bytes();
  impl->result = impl->slots + size * impl->capacity;
  if (p2p_bytes > 0) {
    ShmP2p::Options p2p;
    p2p.rank = rank;
    p2p.size = size;
    p2p.ring_bytes = options.p2p_ring_bytes;
    p2p.group = group_name;
    p2p.global_ranks = global_ranks;
    p2p.timeout = timeout;
    p2p.spin = !impl->oversubscribed;
    p2p.pids = impl->header->pid;
    p2p.fd = impl->fd;
    p2p.region_offset = p2p_offset;
    impl->p2p = std::make_unique<ShmP2p>(static_cast<char*>(impl->base) + p2p_offset, std::move(p2p));
  }
  return std::unique_ptr<ShmCollectives>(new ShmCollectives(std::move(impl)));
}

}  // namespace loom::comm
