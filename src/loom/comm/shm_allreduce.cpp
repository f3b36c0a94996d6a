#include "loom/comm/shm_allreduce.h"

#include <ATen/core/ivalue.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

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

#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/core/tsan.h"

namespace loom::comm {

namespace {

constexpr uint64_t kMagic = 0x316d68736d6f6f6cULL;  // "loomshm1"
constexpr int kMaxRanks = 64;

struct alignas(64) Counter {
  std::atomic<uint32_t> value;
};

struct Header {
  uint64_t magic;
  uint32_t size;
  uint32_t unused;
  uint64_t capacity;
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

// Cross-process futex on a word of the shared segment. Returns false on timeout.
bool futex_wait(std::atomic<uint32_t>* word, uint32_t expected, int timeout_ms) {
  struct timespec ts {
    timeout_ms / 1000, (timeout_ms % 1000) * 1000000L
  };
  const long rc = syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
  return !(rc == -1 && errno == ETIMEDOUT);
}

void futex_wake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

std::string store_get(c10d::Store& store, const std::string& key) {
  const auto v = store.get(key);
  return std::string(v.begin(), v.end());
}
void store_set(c10d::Store& store, const std::string& key, const std::string& value) {
  store.set(key, std::vector<uint8_t>(value.begin(), value.end()));
}

// A c10d work completed by the shared-memory thread; its future drives on_completion.
class ShmWork : public c10d::Work {
 public:
  ShmWork() : future_(c10::make_intrusive<c10::ivalue::Future>(c10::NoneType::get())) {}
  // Completion callbacks (on_completion) run here, before waiters are released.
  void complete(std::exception_ptr error) {
    tsan::release(this);  // the results written so far; loom::comm::Work::wait acquires
    if (error) {
      future_->setError(error);
    } else {
      future_->markCompleted(c10::IValue());
    }
    finish(error);
  }
  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override { return future_; }
  // The engine bounds every operation by the group's timeout itself and reports which
  // rank it waited for; waiting with the same timeout here would only race it.
  bool wait(std::chrono::milliseconds) override { return c10d::Work::wait(::kNoTimeout); }

 private:
  c10::intrusive_ptr<c10::ivalue::Future> future_;
};

}  // namespace

struct ShmAllreduce::Impl {
  int rank = 0, size = 0;
  std::string group;
  std::vector<int> global_ranks;
  std::chrono::milliseconds timeout{0};
  void* base = MAP_FAILED;
  size_t bytes = 0;
  Header* header = nullptr;
  char* slots = nullptr;   // size x capacity
  char* result = nullptr;  // capacity
  uint64_t capacity = 0;
  uint32_t generation = 0;  // barriers passed by this rank

  struct Op {
    std::vector<at::Tensor> tensors;
    c10::intrusive_ptr<ShmWork> work;
  };
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<Op> queue;
  std::atomic<bool> stop{false};
  std::exception_ptr broken;  // the first failure; every later op fails with it
  std::thread thread;

  ~Impl() {
    if (base != MAP_FAILED) munmap(base, bytes);
  }

  void barrier() {
    ++generation;
    header->arrived[rank].value.store(generation, std::memory_order_release);
    futex_wake(&header->arrived[rank].value);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (int r = 0; r < size; ++r) {
      if (r == rank) continue;
      int spins = 0;
      while (true) {
        const uint32_t seen = header->arrived[r].value.load(std::memory_order_acquire);
        if (static_cast<int32_t>(seen - generation) >= 0) break;
        if (++spins < 256) continue;  // a few microseconds before sleeping
        if (futex_wait(&header->arrived[r].value, seen, 50)) continue;
        if (stop.load()) LOOM_THROW(CommError, "allreduce on group '{}' (shared memory): stopped", group);
        if (kill(header->pid[r], 0) == -1 && errno == ESRCH) {
          LOOM_THROW(CommError, "allreduce on group '{}' (shared memory) failed: rank {} (pid {}) exited", group,
                     global_ranks[r], header->pid[r]);
        }
        if (std::chrono::steady_clock::now() > deadline) {
          LOOM_THROW(TimeoutError, "allreduce on group '{}' (shared memory) timed out after {} ms waiting for rank {}",
                     group, timeout.count(), global_ranks[r]);
        }
      }
    }
  }

  template <typename T>
  void sum_partition(size_t count) {
    const size_t lo = count * rank / size, hi = count * (rank + 1) / size;
    T* out = reinterpret_cast<T*>(result);
    const T* first = reinterpret_cast<const T*>(slots);
    for (size_t i = lo; i < hi; ++i) out[i] = first[i];
    for (int r = 1; r < size; ++r) {
      const T* in = reinterpret_cast<const T*>(slots + r * capacity);
      for (size_t i = lo; i < hi; ++i) out[i] += in[i];
    }
  }

  void execute(std::vector<at::Tensor>& tensors) {
    for (auto& t : tensors) {
      char* data = static_cast<char*>(t.data_ptr());
      const size_t n = t.nbytes(), element = t.element_size();
      for (size_t off = 0; off < n; off += capacity) {
        const size_t len = std::min<size_t>(capacity, n - off);
        std::memcpy(slots + rank * capacity, data + off, len);
        barrier();
        if (t.scalar_type() == at::kFloat) {
          sum_partition<float>(len / element);
        } else {
          sum_partition<double>(len / element);
        }
        barrier();
        std::memcpy(data + off, result, len);
      }
    }
  }

  void run() {
    while (true) {
      Op op;
      {
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return stop.load() || !queue.empty(); });
        if (queue.empty()) return;
        op = std::move(queue.front());
        queue.pop_front();
      }
      std::exception_ptr error = broken;
      if (!error) {
        try {
          execute(op.tensors);
        } catch (...) {
          error = broken = std::current_exception();
        }
      }
      op.tensors.clear();
      op.work->complete(error);
    }
  }
};

ShmAllreduce::ShmAllreduce(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  impl_->thread = std::thread([this] { impl_->run(); });
}

ShmAllreduce::~ShmAllreduce() {
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

bool ShmAllreduce::accepts(const std::vector<at::Tensor>& tensors) {
  for (const auto& t : tensors) {
    if (!t.defined() || !t.device().is_cpu() || t.layout() != at::kStrided || !t.is_contiguous() ||
        (t.scalar_type() != at::kFloat && t.scalar_type() != at::kDouble)) {
      return false;
    }
  }
  return !tensors.empty();
}

c10::intrusive_ptr<c10d::Work> ShmAllreduce::allreduce(std::vector<at::Tensor> tensors) {
  auto work = c10::make_intrusive<ShmWork>();
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->queue.push_back({std::move(tensors), work});
  }
  impl_->cv.notify_one();
  return work;
}

std::unique_ptr<ShmAllreduce> ShmAllreduce::connect(c10d::Store& store, int rank, int size,
                                                    const std::string& group_name, const std::vector<int>& global_ranks,
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
  impl->capacity = static_cast<uint64_t>(options.capacity_bytes) / 64 * 64;
  impl->bytes = header_bytes() + (size + 1) * impl->capacity;

  // 2. Rank 0 creates the segment, everyone maps it.
  std::string name;
  bool ok = true;
  if (rank == 0) {
    std::random_device rd;
    name = fmt::format("/loom-{}-{:x}", getpid(), (static_cast<uint64_t>(rd()) << 32) | rd());
    const int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    ok = fd >= 0 && ftruncate(fd, static_cast<off_t>(impl->bytes)) == 0;
    if (ok) impl->base = mmap(nullptr, impl->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fd >= 0) close(fd);
    ok = ok && impl->base != MAP_FAILED;
    if (ok) {
      impl->header = static_cast<Header*>(impl->base);
      impl->header->size = static_cast<uint32_t>(size);
      impl->header->capacity = impl->capacity;
      for (auto& c : impl->header->arrived) c.value.store(0);
      impl->header->magic = kMagic;
    } else if (fd >= 0) {
      shm_unlink(name.c_str());
    }
    store_set(store, "loom/shm/name", ok ? name : "");
  } else {
    name = store_get(store, "loom/shm/name");
    ok = !name.empty();
    const int fd = ok ? shm_open(name.c_str(), O_RDWR, 0600) : -1;
    ok = fd >= 0;
    if (ok) impl->base = mmap(nullptr, impl->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fd >= 0) close(fd);
    ok = ok && impl->base != MAP_FAILED;
    if (ok) {
      impl->header = static_cast<Header*>(impl->base);
      ok = impl->header->magic == kMagic && impl->header->size == static_cast<uint32_t>(size) &&
           impl->header->capacity == impl->capacity;
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
  return std::unique_ptr<ShmAllreduce>(new ShmAllreduce(std::move(impl)));
}

}  // namespace loom::comm
