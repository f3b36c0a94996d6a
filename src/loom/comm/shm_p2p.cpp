#include "loom/comm/shm_p2p.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "loom/comm/queued_work.h"
#include "loom/comm/shm_sync.h"
#include "loom/core/error.h"
#include "loom/core/log.h"

namespace loom::comm {

namespace {

// How long a receiver spins for its message before it sleeps on the ring's futex. The
// waiting thread has nothing else to do, and a sleeping receiver makes the sender pay
// the wake-up (a pipeline activation's send took 80-95 us with it, 15-25 us without:
// bench/pipeline_bubble.py traces); as the collectives' waiting threads (kSpinWaiting).
constexpr auto kSpin = std::chrono::microseconds(1000);
constexpr uint64_t kRecordHeader = 64;
constexpr uint64_t kPage = 4096;  // of a ring, allocated with the segment
constexpr uint32_t kData = 1, kRedirect = 2;

// The shared part of one ring (src -> dst): positions count bytes ever written / freed.
struct RingHeader {
  alignas(64) std::atomic<uint64_t> head;  // written by the sender: end of the last record published
  alignas(64) std::atomic<uint64_t> tail;  // written by the receiver: end of the last record freed
  shm::Counter published;                  // bumped after each record; the receiver sleeps on it
  // Written by the sender before its first record: the ring's bytes (ring_bytes, or
  // less when allocating it failed: open_send_ring).
  alignas(64) std::atomic<uint64_t> capacity;
};
static_assert(sizeof(RingHeader) <= 256);
constexpr size_t kRingHeaderBytes = 256;

struct Record {
  uint32_t kind;  // kData or kRedirect
  int32_t tag;
  uint64_t bytes;  // the tensor's bytes (the payload follows a data record's header)
};

uint64_t round64(uint64_t n) { return (n + 63) / 64 * 64; }
size_t round_page(size_t n) { return (n + 4095) / 4096 * 4096; }

std::atomic<bool> fail_allocation{false};  // fail_ring_allocation_for_tests

// Offsets in the region: the headers of size x size rings, then the rings' data, one
// per ordered pair of distinct ranks.
size_t headers_bytes(int size) { return round_page(static_cast<size_t>(size) * size * kRingHeaderBytes); }
size_t ring_offset(int size, int64_t ring_bytes, int src, int dst) {
  const size_t index = static_cast<size_t>(src) * (size - 1) + (dst < src ? dst : dst - 1);
  return headers_bytes(size) + index * static_cast<size_t>(ring_bytes);
}

}  // namespace

// A message taken out of a ring before anyone asked for its tag.
struct Aside {
  int tag = 0;
  bool redirect = false;
  uint64_t bytes = 0;
  std::vector<char> payload;  // a data record's bytes
  // A redirect's: its receive from the fallback, posted at once into `staged` (bytes), as
  // a Gloo receive posted early would be: its sender may be waiting for it to complete
  // before it sends what we are waiting for.
  at::Tensor staged;
  c10::intrusive_ptr<c10d::Work> work;
};

// A redirect record's receive from the fallback, posted by the progress thread before
// anyone read the record (into `staged`, bytes).
struct Preposted {
  at::Tensor staged;
  c10::intrusive_ptr<c10d::Work> work;
};

struct ShmP2p::Impl {
  Options o;
  char* region = nullptr;
  std::atomic<int64_t> in_rings{0}, redirected{0};
  std::atomic<bool> closed{false};                      // the group is gone: its segment is about to be unmapped
  std::vector<std::unique_ptr<std::mutex>> send_mutex;  // per destination
  std::vector<std::unique_ptr<std::mutex>> recv_mutex;  // per source; guards `aside` too
  std::vector<std::deque<Aside>> aside;                 // per source
  // Per peer: the capacity of our ring to it (send_cap) and of its ring to us
  // (recv_cap) once known here (0 before), under send_mutex / recv_mutex.
  std::vector<uint64_t> send_cap, recv_cap;

  // Note [receives posted early]: a Gloo receive is posted when it is made, and Gloo's
  // send of a big message completes only once its receive is posted. A receive here
  // reads its ring when it is waited for; so a redirected message whose sender waits
  // for its send before, say, a barrier, and whose receiver posted its receive before
  // that barrier and waits for it after, would deadlock both. While receives are
  // outstanding, a progress thread therefore looks at the rings every millisecond and
  // posts the fallback receive of each redirect record not read yet (preposted, by ring
  // position, under recv_mutex); whoever reads the record later takes that receive.
  // Data records need no such help: their senders never wait.
  std::atomic<int> outstanding{0};                     // receives made and not complete
  std::atomic<c10d::ProcessGroup*> fallback{nullptr};  // the group's process group
  std::vector<std::map<uint64_t, Preposted>> preposted;
  std::vector<uint64_t> scanned;                           // per source: where the progress thread has read to
  std::vector<std::unique_ptr<std::atomic<int>>> waiting;  // per source: receives blocked on its ring
  std::mutex progress_mutex;
  std::condition_variable progress_cv;
  std::thread progress_thread;  // started by the first receive

  // A receive was made: counted, and the thread started (once).
  void receive_made(c10d::ProcessGroup* pg) {
    fallback.store(pg);
    {
      std::lock_guard<std::mutex> lock(progress_mutex);
      if (!closed.load() && !progress_thread.joinable()) {
        progress_thread = std::thread([this] { progress_loop(); });
      }
    }
    outstanding.fetch_add(1);  // after the thread (its start may throw)
  }
  void stop_progress() {
    {
      std::lock_guard<std::mutex> lock(progress_mutex);
      closed.store(true);
    }
    progress_cv.notify_all();
    if (progress_thread.joinable()) progress_thread.join();
  }
  void progress_loop() {
    std::unique_lock<std::mutex> lock(progress_mutex);
    while (!closed.load()) {
      if (outstanding.load() > 0 && fallback.load() != nullptr) {
        lock.unlock();
        for (int src = 0; src < o.size; ++src) {
          if (src == o.rank) continue;
          try {
            prepost_redirects(src);
          } catch (const std::exception& e) {  // the receive that reads the record meets it too
            log::debug("group '{}': posting receives early from rank {}: {}", o.group, o.global_ranks[src], e.what());
          }
        }
        lock.lock();
      }
      // Every millisecond while receives are outstanding, else every 10 ms (no wake-up
      // call from the receives: a late look only delays a sender that waits).
      progress_cv.wait_for(lock, std::chrono::milliseconds(outstanding.load() > 0 ? 1 : 10));
    }
  }
  // Posts the fallback receive of every redirect record of ring (src -> rank) between
  // what was read and what is published. Skipped while a receive holds the ring or
  // waits for it (that one reads every record anyway, and takes a redirect straight into
  // its own tensor, where a preposted one costs a copy).
  void prepost_redirects(int src) {
    if (waiting[src]->load() > 0) return;
    std::unique_lock<std::mutex> lock(*recv_mutex[src], std::try_to_lock);
    if (!lock.owns_lock()) return;
    RingHeader& h = header(src, o.rank);
    const uint64_t head = h.head.load(std::memory_order_acquire);
    uint64_t pos = std::max(scanned[src], h.tail.load(std::memory_order_relaxed));
    if (pos == head) return;
    open_recv_ring(src);
    while (pos != head) {
      Record r{};
      read_record(src, pos, r);
      if (r.kind == kRedirect && preposted[src].count(pos) == 0) {
        Preposted pre{at::empty({static_cast<int64_t>(r.bytes)}, at::kByte), {}};
        std::vector<at::Tensor> t{pre.staged};
        pre.work = fallback.load()->recv(t, src, r.tag);
        preposted[src].emplace(pos, std::move(pre));
      }
      pos += kRecordHeader + (r.kind == kData ? round64(r.bytes) : 0);
      scanned[src] = pos;  // record by record: a failure later does not post these twice
    }
  }
  // The fallback receive posted for the redirect record at `pos`, if any (under recv_mutex).
  std::optional<Preposted> take_preposted(int src, uint64_t pos) {
    auto& m = preposted[src];
    auto it = m.find(pos);
    if (it == m.end()) return std::nullopt;
    Preposted pre = std::move(it->second);
    m.erase(it);
    return pre;
  }

  RingHeader& header(int src, int dst) {
    return *reinterpret_cast<RingHeader*>(region + (static_cast<size_t>(src) * o.size + dst) * kRingHeaderBytes);
  }
  char* data(int src, int dst) { return region + ring_offset(o.size, o.ring_bytes, src, dst); }

  // Before our first send to `dst` (under its send_mutex): allocates the ring past its
  // first page, and maps its pages into this process. Otherwise the first pass over a
  // 4 MiB ring faults page by page: a 134 KB activation's send took 0.5 ms instead of
  // 15 us for the first 31 sends here. The receiver maps them at its first record.
  // A ring that cannot get its whole size (a full /dev/shm) tries half as much, down to
  // 64 KiB, and then stays one page: messages that do not fit go through the fallback.
  void open_send_ring(int dst) {
    if (send_cap[dst] != 0) return;
    uint64_t cap = static_cast<uint64_t>(o.ring_bytes);
    const size_t at = o.region_offset + ring_offset(o.size, o.ring_bytes, o.rank, dst) + kPage;
    int rc = 0;
    while (cap > kPage) {
      do {
        rc = fail_allocation.load() ? ENOSPC : posix_fallocate(o.fd, static_cast<off_t>(at), cap - kPage);
      } while (rc == EINTR);
      if (rc == 0) break;
      cap = cap / 2 >= (64 << 10) ? cap / 2 / kPage * kPage : kPage;
    }
    if (cap < static_cast<uint64_t>(o.ring_bytes)) {
      log::warn(
          "group '{}': rank {}'s shared-memory ring to rank {} has {} of its {} bytes ({}): bigger messages "
          "go through Gloo",
          o.group, o.global_ranks[o.rank], o.global_ranks[dst], cap, o.ring_bytes, std::strerror(rc));
    }
    madvise(data(o.rank, dst), cap, MADV_POPULATE_WRITE);
    header(o.rank, dst).capacity.store(cap, std::memory_order_release);
    send_cap[dst] = cap;
  }
  // At the first record of `src` (under its recv_mutex; its sender set the capacity
  // before it published the record).
  uint64_t open_recv_ring(int src) {
    if (recv_cap[src] == 0) {
      const uint64_t cap = header(src, o.rank).capacity.load(std::memory_order_acquire);
      LOOM_CHECK(cap >= kPage && cap <= static_cast<uint64_t>(o.ring_bytes) && cap % kPage == 0, ProtocolError,
                 "recv from rank {} on group '{}' (shared memory): a corrupt ring capacity {}", o.global_ranks[src],
                 o.group, cap);
      recv_cap[src] = cap;
      madvise(data(src, o.rank), cap, MADV_POPULATE_READ);
    }
    return recv_cap[src];
  }

  // Copies into / out of the ring of `cap` bytes at byte position `pos`, wrapping at the end.
  void put(int dst, uint64_t cap, uint64_t pos, const void* from, uint64_t n) {
    if (n == 0) return;  // (from may be null)
    char* base = data(o.rank, dst);
    const uint64_t at = pos % cap, first = std::min<uint64_t>(n, cap - at);
    std::memcpy(base + at, from, first);
    std::memcpy(base, static_cast<const char*>(from) + first, n - first);
  }
  void get(int src, uint64_t pos, void* to, uint64_t n) {
    if (n == 0) return;  // (to may be null)
    const char* base = data(src, o.rank);
    const uint64_t cap = recv_cap[src], at = pos % cap, first = std::min<uint64_t>(n, cap - at);
    std::memcpy(to, base + at, first);
    std::memcpy(static_cast<char*>(to) + first, base, n - first);
  }

  [[noreturn]] void fail_peer(const char* what, int peer, int tag) {
    LOOM_THROW(CommError, "{} rank {} (tag {}) on group '{}' (shared memory) failed: its process (pid {}) exited", what,
               o.global_ranks[peer], tag, o.group, o.pids[peer]);
  }
  // Called every 50 ms of waiting for `peer`: its exit or the deadline is an error.
  void check_peer(const char* what, int peer, int tag, std::chrono::steady_clock::time_point deadline) {
    if (shm::process_exited(o.pids[peer])) fail_peer(what, peer, tag);
    if (std::chrono::steady_clock::now() > deadline) {
      LOOM_THROW(TimeoutError, "{} rank {} (tag {}) on group '{}' (shared memory) timed out after {} ms", what,
                 o.global_ranks[peer], tag, o.group, o.timeout.count());
    }
  }

  // ---- sending -------------------------------------------------------------------
  // Publishes a record (header + `payload` of `bytes`) in ring (rank -> dst) if it fits in
  // the free space now, or (`must`) once it does. False: it does not fit (and !must).
  bool publish(int dst, const Record& r, const void* payload, uint64_t bytes, bool must, int tag) {
    RingHeader& h = header(o.rank, dst);
    const uint64_t cap = send_cap[dst];
    // A data record leaves a sixteenth of the ring free for redirect records, so that a
    // send that does not fit can always announce itself without waiting for the receiver
    // (unless thousands of redirects are unread: 4096 of a 4 MiB ring; at least 32).
    const uint64_t reserve = r.kind == kData ? std::max(cap / 16, std::min<uint64_t>(cap / 2, 4096)) : 0;
    const uint64_t need = kRecordHeader + round64(bytes) + reserve;
    const uint64_t head = h.head.load(std::memory_order_relaxed);  // only we write it
    const auto deadline = std::chrono::steady_clock::now() + o.timeout;
    auto last_check = std::chrono::steady_clock::now();
    while (head + need - h.tail.load(std::memory_order_acquire) > cap) {
      if (!must) return false;
      // The receiver has left almost the whole ring unread: poll (rare; no futex for space).
      struct timespec ts {
        0, 20000
      };
      nanosleep(&ts, nullptr);
      if (std::chrono::steady_clock::now() - last_check > std::chrono::milliseconds(50)) {
        last_check = std::chrono::steady_clock::now();
        check_peer("send to", dst, tag, deadline);
      }
    }
    char record[kRecordHeader] = {};
    std::memcpy(record, &r, sizeof(r));
    put(dst, cap, head, record, kRecordHeader);
    if (bytes > 0) put(dst, cap, head + kRecordHeader, payload, bytes);
    h.head.store(head + need - reserve, std::memory_order_release);
    h.published.value.fetch_add(1);
    if (h.published.sleepers.load() != 0) shm::futex_wake(&h.published.value);
    return true;
  }

  // ---- receiving -----------------------------------------------------------------
  // The next record of ring (src -> rank), if one is published. The caller holds
  // recv_mutex[src]; `pos` is where the record starts.
  bool next_record(int src, Record& r, uint64_t& pos) {
    RingHeader& h = header(src, o.rank);
    pos = h.tail.load(std::memory_order_relaxed);  // only we write it
    if (h.head.load(std::memory_order_acquire) == pos) return false;
    open_recv_ring(src);
    read_record(src, pos, r);
    return true;
  }
  void read_record(int src, uint64_t pos, Record& r) {
    char record[kRecordHeader];
    get(src, pos, record, kRecordHeader);
    std::memcpy(&r, record, sizeof(r));
    LOOM_CHECK(r.kind == kData || r.kind == kRedirect, ProtocolError,
               "recv from rank {} on group '{}' (shared memory): a corrupt record in the ring", o.global_ranks[src],
               o.group);
  }
  // Waits, holding no lock, until ring (src -> rank) has published a record since its
  // counter read `seen` (spinning until `spin_until`, then sleeping on its futex); the
  // peer's exit or the deadline is an error.
  void wait_for_news(int src, uint32_t seen, std::chrono::steady_clock::time_point spin_until,
                     std::chrono::steady_clock::time_point deadline, int tag) {
    shm::wait_until(
        header(src, o.rank).published, [&](uint32_t now) { return now != seen; }, spin_until,
        [&] { check_peer("recv from", src, tag, deadline); });
  }
  void free_record(int src, uint64_t pos, const Record& r) {
    const uint64_t end = pos + kRecordHeader + (r.kind == kData ? round64(r.bytes) : 0);
    header(src, o.rank).tail.store(end, std::memory_order_release);
  }
};

namespace {

// What a receive delivers into: the caller's tensor, checked against what was sent.
void check_bytes(const ShmP2p::Options& o, const at::Tensor& t, uint64_t bytes, int src, int tag) {
  LOOM_CHECK(static_cast<uint64_t>(t.nbytes()) == bytes, CommError,
             "recv from rank {} (tag {}) on group '{}': the message has {} bytes, the receive expected {}",
             o.global_ranks[src], tag, o.group, bytes, t.nbytes());
}

void copy_into(const at::Tensor& t, const std::function<void(void*)>& fill) {
  if (t.is_contiguous()) {
    fill(t.data_ptr());
  } else {
    at::Tensor tmp = at::empty_like(t, at::MemoryFormat::Contiguous);
    fill(tmp.data_ptr());
    const_cast<at::Tensor&>(t).copy_(tmp);
  }
}

}  // namespace

// A receive: completed by whichever thread finds its message (wait(), or isCompleted()
// polling without blocking). A redirected message completes through the fallback's work.
class ShmRecvWork : public QueuedWork {
 public:
  ShmRecvWork(std::shared_ptr<ShmP2p::Impl> impl, at::Tensor tensor, int src, int tag, c10d::ProcessGroup& fallback)
      : impl_(std::move(impl)), tensor_(std::move(tensor)), src_(src), tag_(tag), fallback_(&fallback) {
    impl_->receive_made(fallback_);
  }
  ~ShmRecvWork() override {
    if (!counted_out_) impl_->outstanding.fetch_sub(1);
  }

  bool isCompleted() override {
    if (!c10d::Work::isCompleted()) progress(false);
    return c10d::Work::isCompleted();
  }
  bool wait(std::chrono::milliseconds) override {
    if (!c10d::Work::isCompleted()) progress(true);
    return c10d::Work::wait(::kNoTimeout);
  }
  int sourceRank() const override { return source_; }

 private:
  // Tries to find this receive's message (blocking: until it comes), then completes.
  // Polling (isCompleted) gives up at once when another thread is already at it.
  void progress(bool block) {
    std::unique_lock<std::mutex> lock(progress_mutex_, std::defer_lock);
    if (block) {
      lock.lock();
    } else if (!lock.try_lock()) {
      return;
    }
    if (c10d::Work::isCompleted()) return;
    try {
      LOOM_CHECK(!impl_->closed.load(), CommError, "recv on group '{}' (shared memory): the group was destroyed",
                 impl_->o.group);
      if (!redirected_) {
        if (!(src_ >= 0 ? take(src_, block) : take_any(block))) return;
        if (!redirected_) {
          finish_with(nullptr);
          return;
        }
      }
      // From the fallback: the sender's Gloo send with the same tag.
      if (!block && !redirected_->isCompleted()) return;
      redirected_->wait(impl_->o.timeout);
      if (staged_.defined() && staged_.nbytes() > 0) {
        copy_into(tensor_, [&](void* to) { std::memcpy(to, staged_.data_ptr(), staged_.nbytes()); });
      }
      finish_with(nullptr);
    } catch (...) {
      finish_with(std::current_exception());
    }
  }
  void finish_with(std::exception_ptr error) {
    if (!counted_out_) impl_->outstanding.fetch_sub(1);
    counted_out_ = true;
    complete(std::move(error));
  }

  // Delivers a message of `src` with our tag, from the ones set aside or from the ring
  // (others' records on the way are set aside). Blocking, it sleeps without the lock,
  // so other receives from `src` (other tags, other threads) go on meanwhile.
  bool take(int src, bool block) {
    ShmP2p::Impl& p = *impl_;
    const auto now = std::chrono::steady_clock::now();
    const auto deadline = now + p.o.timeout;
    const auto spin_until = now + (p.o.spin ? kSpin : std::chrono::microseconds(0));
    while (true) {
      uint32_t seen = 0;
      {
        std::lock_guard<std::mutex> lock(*p.recv_mutex[src]);
        auto& aside = p.aside[src];
        for (auto it = aside.begin(); it != aside.end(); ++it) {
          if (it->tag != tag_) continue;
          Aside a = std::move(*it);
          aside.erase(it);
          deliver_aside(src, a);
          return true;
        }
        seen = p.header(src, p.o.rank).published.value.load();  // before reading: a later record changes it
        Record r{};
        uint64_t pos = 0;
        while (p.next_record(src, r, pos)) {
          if (r.tag == tag_) {
            deliver_record(src, r, pos);
            return true;
          }
          set_aside(src, r, pos);
        }
      }
      if (!block) return false;
      p.waiting[src]->fetch_add(1);
      try {
        p.wait_for_news(src, seen, spin_until, deadline, tag_);
      } catch (...) {
        p.waiting[src]->fetch_sub(1);
        throw;
      }
      p.waiting[src]->fetch_sub(1);
    }
  }

  // Our record at `pos` of ring (src -> rank): copied out (or received from the
  // fallback), and freed. A message of another size than our tensor is consumed, in error.
  void deliver_record(int src, const Record& r, uint64_t pos) {
    ShmP2p::Impl& p = *impl_;
    source_ = src;
    std::optional<Preposted> pre = r.kind == kRedirect ? p.take_preposted(src, pos) : std::nullopt;
    if (static_cast<uint64_t>(tensor_.nbytes()) != r.bytes) {
      p.free_record(src, pos, r);
      if (pre) {
        pre->work->wait(p.o.timeout);
      } else if (r.kind == kRedirect) {  // take it off the fallback, or a later receive would get it
        std::vector<at::Tensor> t{at::empty({static_cast<int64_t>(r.bytes)}, at::kByte)};
        fallback_->recv(t, src, tag_)->wait(p.o.timeout);
      }
      check_bytes(p.o, tensor_, r.bytes, src, tag_);
    }
    if (r.kind == kData) {
      copy_into(tensor_, [&](void* to) { p.get(src, pos + kRecordHeader, to, r.bytes); });
      p.free_record(src, pos, r);
    } else if (pre) {  // copied out of `staged_` once its receive completes
      p.free_record(src, pos, r);
      staged_ = pre->staged;
      redirected_ = pre->work;
    } else {
      p.free_record(src, pos, r);
      start_redirect(src, r.bytes);
    }
  }

  // Someone else's record: kept in this process (a redirect's receive posted at once), freed.
  void set_aside(int src, const Record& r, uint64_t pos) {
    ShmP2p::Impl& p = *impl_;
    Aside a{r.tag, r.kind == kRedirect, r.bytes, {}, {}, {}};
    if (r.kind == kData) {
      a.payload.resize(r.bytes);
      p.get(src, pos + kRecordHeader, a.payload.data(), r.bytes);
    } else if (std::optional<Preposted> pre = p.take_preposted(src, pos)) {
      a.staged = pre->staged;
      a.work = pre->work;
    } else {
      a.staged = at::empty({static_cast<int64_t>(r.bytes)}, at::kByte);
      std::vector<at::Tensor> t{a.staged};
      a.work = fallback_->recv(t, src, r.tag);
    }
    p.free_record(src, pos, r);
    p.aside[src].push_back(std::move(a));
  }

  // recv_any: the first source that has a message with our tag; blocking polls them all.
  bool take_any(bool block) {
    const ShmP2p::Options& o = impl_->o;
    const auto deadline = std::chrono::steady_clock::now() + o.timeout;
    for (int round = 0;; ++round) {
      for (int src = 0; src < o.size; ++src) {
        if (src != o.rank && take(src, false)) return true;
      }
      if (!block) return false;
      struct timespec ts {
        0, round < 100 ? 20000 : 200000
      };
      nanosleep(&ts, nullptr);
      if (round % 250 == 249) {  // every 50 ms or so: a peer that exited is an error
        for (int src = 0; src < o.size; ++src) {
          if (src != o.rank) impl_->check_peer("recv (any source) from", src, tag_, deadline);
        }
      }
      if (std::chrono::steady_clock::now() > deadline) {
        LOOM_THROW(TimeoutError, "recv from any rank (tag {}) on group '{}' (shared memory) timed out after {} ms",
                   tag_, o.group, o.timeout.count());
      }
    }
  }

  void deliver_aside(int src, const Aside& a) {
    source_ = src;
    if (a.redirect) a.work->wait(impl_->o.timeout);  // first: consumed even if in error
    check_bytes(impl_->o, tensor_, a.bytes, src, tag_);
    const char* from = a.redirect ? static_cast<const char*>(a.staged.data_ptr()) : a.payload.data();
    if (a.bytes > 0) copy_into(tensor_, [&](void* to) { std::memcpy(to, from, a.bytes); });
  }

  void start_redirect(int src, uint64_t bytes) {
    check_bytes(impl_->o, tensor_, bytes, src, tag_);
    std::vector<at::Tensor> t{tensor_.is_contiguous() ? tensor_ : tensor_.contiguous()};
    target_ = t[0];
    redirected_ = fallback_->recv(t, src, tag_);
    if (!target_.is_same(tensor_)) {
      // Non-contiguous receive buffer: copy over once the fallback has delivered.
      redirected_->wait(impl_->o.timeout);
      const_cast<at::Tensor&>(tensor_).copy_(target_);
    }
  }

  std::shared_ptr<ShmP2p::Impl> impl_;
  at::Tensor tensor_, target_;
  at::Tensor staged_;         // a preposted redirect's bytes (Note [receives posted early])
  bool counted_out_ = false;  // no longer in impl_->outstanding
  int src_, tag_;
  int source_ = -1;
  c10d::ProcessGroup* fallback_;
  c10::intrusive_ptr<c10d::Work> redirected_;
  std::mutex progress_mutex_;
};

size_t ShmP2p::region_bytes(int size, int64_t ring_bytes) {
  if (size < 2 || size > kMaxRanks || ring_bytes < 4096 || ring_bytes % 4096 != 0) return 0;
  return headers_bytes(size) + static_cast<size_t>(size) * (size - 1) * static_cast<size_t>(ring_bytes);
}

bool ShmP2p::allocate_fixed(int fd, size_t offset, int size, int64_t ring_bytes) {
  if (posix_fallocate(fd, static_cast<off_t>(offset), static_cast<off_t>(headers_bytes(size))) != 0) return false;
  for (int src = 0; src < size; ++src) {
    for (int dst = 0; dst < size; ++dst) {
      if (dst == src) continue;
      const size_t at = offset + ring_offset(size, ring_bytes, src, dst);
      if (posix_fallocate(fd, static_cast<off_t>(at), kPage) != 0) return false;
    }
  }
  return true;
}

void ShmP2p::fail_ring_allocation_for_tests(bool fail) { fail_allocation.store(fail); }

ShmP2p::ShmP2p(void* region, Options options) : impl_(std::make_shared<Impl>()) {
  LOOM_CHECK(options.ring_bytes % 4096 == 0 && options.ring_bytes >= 4096, ConfigError,
             "shared-memory point-to-point: ring of {} bytes (a multiple of 4096)", options.ring_bytes);
  LOOM_CHECK(reinterpret_cast<uintptr_t>(region) % 4096 == 0 && options.region_offset % 4096 == 0, ConfigError,
             "shared-memory point-to-point: the rings' region is not page-aligned");
  impl_->o = std::move(options);
  impl_->region = static_cast<char*>(region);
  for (int r = 0; r < impl_->o.size; ++r) {
    impl_->send_mutex.push_back(std::make_unique<std::mutex>());
    impl_->recv_mutex.push_back(std::make_unique<std::mutex>());
  }
  impl_->aside.resize(impl_->o.size);
  impl_->send_cap.assign(impl_->o.size, 0);
  impl_->recv_cap.assign(impl_->o.size, 0);
  impl_->preposted.resize(impl_->o.size);
  for (int r = 0; r < impl_->o.size; ++r) impl_->waiting.push_back(std::make_unique<std::atomic<int>>(0));
  impl_->scanned.assign(impl_->o.size, 0);
}

ShmP2p::~ShmP2p() { impl_->stop_progress(); }

c10::intrusive_ptr<c10d::Work> ShmP2p::send(const at::Tensor& tensor, int dst, int tag, c10d::ProcessGroup& fallback) {
  Impl& p = *impl_;
  const at::Tensor t = tensor.contiguous();
  const uint64_t bytes = t.nbytes();
  std::lock_guard<std::mutex> lock(*p.send_mutex[dst]);
  p.open_send_ring(dst);
  if (p.publish(dst, Record{kData, tag, bytes}, t.data_ptr(), bytes, /*must=*/false, tag)) {
    ++p.in_rings;
    auto done = c10::make_intrusive<QueuedWork>();
    done->complete(nullptr);
    return done;
  }
  // Does not fit now: through the fallback, announced in the ring so that the receiver
  // takes it from there in its place.
  std::vector<at::Tensor> v{t};
  auto work = fallback.send(v, dst, tag);
  p.publish(dst, Record{kRedirect, tag, bytes}, nullptr, 0, /*must=*/true, tag);
  ++p.redirected;
  return work;
}

c10::intrusive_ptr<c10d::Work> ShmP2p::recv(const at::Tensor& tensor, int src, int tag, c10d::ProcessGroup& fallback) {
  return c10::make_intrusive<ShmRecvWork>(impl_, tensor, src, tag, fallback);
}

c10::intrusive_ptr<c10d::Work> ShmP2p::recv_any(const at::Tensor& tensor, int tag, c10d::ProcessGroup& fallback) {
  return c10::make_intrusive<ShmRecvWork>(impl_, tensor, -1, tag, fallback);
}

int64_t ShmP2p::sent_in_rings() const { return impl_->in_rings.load(); }
int64_t ShmP2p::sent_redirected() const { return impl_->redirected.load(); }

}  // namespace loom::comm
