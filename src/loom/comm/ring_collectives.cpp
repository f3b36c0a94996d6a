#include "loom/comm/ring_collectives.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "loom/comm/queued_work.h"
#include "loom/comm/sharded_args.h"
#include "loom/core/error.h"

namespace loom::comm {

namespace {

enum class Kind { reduce_scatter, all_gather };

const char* name_of(Kind kind) { return kind == Kind::reduce_scatter ? "reduce_scatter" : "all_gather"; }

// The first line of a c10 / std exception's message (c10d appends source paths).
std::string cause_of_current_exception() {
  std::string cause;
  try {
    throw;
  } catch (const c10::Error& e) {
    cause = e.what_without_backtrace();
  } catch (const std::exception& e) {
    cause = e.what();
  } catch (...) {
    cause = "unknown error";
  }
  const auto nl = cause.find('\n');
  if (nl != std::string::npos) cause = cause.substr(0, nl);
  return cause;
}

}  // namespace

struct RingCollectives::Impl {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::string group;
  std::vector<int> global_ranks;
  std::chrono::milliseconds timeout{0};
  Options options;
  int rank = 0, size = 1;

  struct Op {
    Kind kind = Kind::reduce_scatter;
    at::Tensor buffer;            // flat, contiguous
    std::vector<int64_t> counts;  // elements per member
    c10::intrusive_ptr<QueuedWork> work;
  };
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<Op> queue;
  bool stop = false;          // under mutex
  std::exception_ptr broken;  // the first failure; every later op fails with it (engine thread only)
  at::Tensor scratch;         // bytes; reduce_scatter receives here (engine thread only)
  std::thread thread;

  // One posted send or recv of a piece, with what it needs for an error message.
  struct Pending {
    c10::intrusive_ptr<c10d::Work> work;
    bool is_send = false;
    int peer = 0;         // group rank
    at::Tensor dst, src;  // recv of reduce_scatter: add src (scratch) into dst (buffer)
  };

  [[noreturn]] void fail(const char* op, bool is_send, int peer, const std::string& cause, bool timed_out) {
    const std::string what = fmt::format("{} on group '{}' ({} rank {})", op, group, is_send ? "send to" : "recv from",
                                         global_ranks.at(peer));
    if (timed_out) {
      LOOM_THROW(TimeoutError, "{} timed out after {} ms waiting for rank {}: {}", what, timeout.count(),
                 global_ranks.at(peer), cause);
    }
    LOOM_THROW(CommError, "{} failed: {}", what, cause);
  }

  c10::intrusive_ptr<c10d::Work> post(const char* op, bool is_send, int peer, const at::Tensor& piece) {
    std::vector<at::Tensor> tensors{piece};
    try {
      return is_send ? pg->send(tensors, peer, options.tag) : pg->recv(tensors, peer, options.tag);
    } catch (...) {
      fail(op, is_send, peer, cause_of_current_exception(), false);
    }
  }

  void wait(const char* op, const Pending& p) {
    bool ok = false;
    try {
      ok = p.work->wait(timeout);
    } catch (...) {
      const std::string cause = cause_of_current_exception();
      const bool timed_out = cause.find("imed out") != std::string::npos || cause.find("imeout") != std::string::npos;
      fail(op, p.is_send, p.peer, cause, timed_out);
    }
    if (!ok) fail(op, p.is_send, p.peer, "the operation did not complete", true);
  }

  // Posts elements [offset, offset + count) of `buffer` in pieces of at most piece_bytes:
  // sends from the buffer; receives into the buffer, or into `scratch_view` (from its
  // start) when it is defined (reduce_scatter, which then adds it into the buffer).
  void post_range(const char* op, std::vector<Pending>& pending, bool is_send, int peer, const at::Tensor& buffer,
                  int64_t offset, int64_t count, const at::Tensor& scratch_view) {
    const int64_t piece = std::max<int64_t>(1, options.piece_bytes / static_cast<int64_t>(buffer.element_size()));
    for (int64_t k = 0; k < count; k += piece) {
      const int64_t len = std::min(piece, count - k);
      Pending p;
      p.is_send = is_send;
      p.peer = peer;
      p.dst = buffer.narrow(0, offset + k, len);
      if (scratch_view.defined()) p.src = scratch_view.narrow(0, k, len);
      p.work = post(op, is_send, peer, p.src.defined() ? p.src : p.dst);
      pending.push_back(std::move(p));
    }
  }

  void execute(Op& op) {
    const char* name = name_of(op.kind);
    const at::Tensor& buffer = op.buffer;
    const auto& counts = op.counts;
    std::vector<int64_t> offsets(size, 0);
    for (int r = 1; r < size; ++r) offsets[r] = offsets[r - 1] + counts[r - 1];
    const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    const bool reduce = op.kind == Kind::reduce_scatter;

    at::Tensor into;  // reduce_scatter: where received pieces land before the add
    if (reduce && buffer.numel() > 0) {
      const int64_t max_count = *std::max_element(counts.begin(), counts.end());
      const int64_t bytes = max_count * static_cast<int64_t>(buffer.element_size());
      if (!scratch.defined() || scratch.numel() < bytes) scratch = at::empty({bytes}, at::kByte);
      into = at::from_blob(scratch.data_ptr(), {max_count}, buffer.options());
    }
    const auto mod = [&](int x) { return ((x % size) + size) % size; };
    for (int s = 0; s + 1 < size; ++s) {
      const int send_range = reduce ? mod(rank - 1 - s) : mod(rank - s);
      const int recv_range = reduce ? mod(rank - 2 - s) : mod(rank - 1 - s);
      std::vector<Pending> recvs, sends;
      post_range(name, recvs, false, prev, buffer, offsets[recv_range], counts[recv_range], into);
      post_range(name, sends, true, next, buffer, offsets[send_range], counts[send_range], at::Tensor());
      // Adding piece k overlaps receiving piece k+1.
      for (auto& p : recvs) {
        wait(name, p);
        if (reduce) p.dst.add_(p.src);
      }
      // The sent range is the next step's received-into range for N = 2 only, but the
      // step after may write it for N = 3: every send completes before the next step.
      for (auto& p : sends) wait(name, p);
    }
  }

  void run() {
    while (true) {
      Op op;
      {
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return stop || !queue.empty(); });
        if (stop) return;  // the destructor fails what is left
        op = std::move(queue.front());
        queue.pop_front();
      }
      std::exception_ptr error = broken;
      if (!error) {
        try {
          execute(op);
        } catch (...) {
          error = broken = std::current_exception();
        }
      }
      op.buffer = at::Tensor();
      op.work->complete(error);
    }
  }
};

RingCollectives::RingCollectives(c10::intrusive_ptr<c10d::ProcessGroup> pg, std::string group_name,
                                 std::vector<int> global_ranks, std::chrono::milliseconds timeout, Options options)
    : impl_(std::make_unique<Impl>()) {
  LOOM_CHECK(pg, CommError, "ring collectives on group '{}': no process group", group_name);
  impl_->rank = pg->getRank();
  impl_->size = pg->getSize();
  LOOM_CHECK(static_cast<int>(global_ranks.size()) == impl_->size, CommError,
             "ring collectives on group '{}': {} global ranks for a group of size {}", group_name, global_ranks.size(),
             impl_->size);
  LOOM_CHECK(options.piece_bytes > 0, CommError, "ring collectives on group '{}': piece_bytes must be positive, not {}",
             group_name, options.piece_bytes);
  impl_->pg = std::move(pg);
  impl_->group = std::move(group_name);
  impl_->global_ranks = std::move(global_ranks);
  impl_->timeout = timeout;
  impl_->options = options;
  if (impl_->size > 1) impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

RingCollectives::~RingCollectives() {
  {
    // Under the mutex: run() tests `stop` under it before sleeping (see ~ShmCollectives).
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
  for (auto& op : impl_->queue) {
    op.work->complete(std::make_exception_ptr(CommError(
        fmt::format("{} on group '{}': the group was destroyed", name_of(op.kind), impl_->group), __FILE__, __LINE__)));
  }
}

static c10::intrusive_ptr<c10d::Work> enqueue(RingCollectives::Impl& impl, Kind kind, at::Tensor buffer,
                                              std::vector<int64_t> counts) {
  check_sharded_args(name_of(kind), impl.group, impl.size, buffer, counts);
  auto work = c10::make_intrusive<QueuedWork>();
  if (impl.size == 1) {  // nothing to exchange: the range is already the whole sum
    work->complete(nullptr);
    return work;
  }
  RingCollectives::Impl::Op op;
  op.kind = kind;
  op.buffer = buffer.view({-1});
  op.counts = std::move(counts);
  op.work = work;
  {
    std::lock_guard<std::mutex> lock(impl.mutex);
    impl.queue.push_back(std::move(op));
  }
  impl.cv.notify_one();
  return work;
}

c10::intrusive_ptr<c10d::Work> RingCollectives::reduce_scatter(at::Tensor buffer, std::vector<int64_t> counts) {
  return enqueue(*impl_, Kind::reduce_scatter, std::move(buffer), std::move(counts));
}

c10::intrusive_ptr<c10d::Work> RingCollectives::all_gather(at::Tensor buffer, std::vector<int64_t> counts) {
  return enqueue(*impl_, Kind::all_gather, std::move(buffer), std::move(counts));
}

}  // namespace loom::comm
