#include "loom/comm/group.h"

#include <fmt/format.h>

#include <algorithm>

#include "loom/comm/c10d_impl.h"
#include "loom/comm/sharded_args.h"
#include "loom/comm/shm_p2p.h"
#include "loom/core/error.h"

namespace loom::comm {

namespace {
c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return c10d::ReduceOp::SUM;
    case ReduceOp::max: return c10d::ReduceOp::MAX;
    case ReduceOp::min: return c10d::ReduceOp::MIN;
    case ReduceOp::product: return c10d::ReduceOp::PRODUCT;
  }
  return c10d::ReduceOp::SUM;
}
}  // namespace

Group::Group(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Group::~Group() = default;

const std::string& Group::name() const { return impl_->name; }
int Group::rank() const { return impl_->pg->getRank(); }
int Group::size() const { return impl_->pg->getSize(); }
int Group::global_rank(int group_rank) const { return impl_->global_ranks.at(group_rank); }
const std::vector<int>& Group::global_ranks() const { return impl_->global_ranks; }
std::chrono::milliseconds Group::timeout() const { return impl_->timeout; }
c10d::ProcessGroup& Group::backend() { return *impl_->pg; }
bool Group::uses_shared_memory() const { return impl_->shm != nullptr; }
Group::AllreduceCounts Group::allreduce_counts() const {
  return {impl_->shm_allreduces.load(), impl_->c10d_allreduces.load()};
}

// Issues one c10d call, wrapping both immediate failures and the returned handle.
template <typename F>
static Work issue(Group::Impl& g, const std::string& what, F&& call) {
  auto impl = std::make_shared<Work::Impl>();
  impl->what = fmt::format("{} on group '{}'", what, g.name);
  impl->timeout = g.timeout;
  impl->liveness = g.liveness;
  if (g.liveness) impl->members = g.global_ranks;
  try {
    impl->work = call();
  } catch (...) {
    rethrow_as_comm_error(impl->what);
  }
  return Work(std::move(impl));
}

Work Group::allreduce(std::vector<at::Tensor>& tensors, ReduceOp op) {
  if (size() == 1) return Work::done();
  if (op == ReduceOp::sum && impl_->shm && ShmCollectives::accepts(tensors)) {
    ++impl_->shm_allreduces;
    return issue(*impl_, "allreduce", [&] { return impl_->shm->allreduce(tensors); });
  }
  ++impl_->c10d_allreduces;
  c10d::AllreduceOptions opts;
  opts.reduceOp = to_c10d(op);
  opts.timeout = impl_->timeout;
  return issue(*impl_, "allreduce", [&] { return impl_->pg->allreduce(tensors, opts); });
}

Work Group::broadcast(std::vector<at::Tensor>& tensors, int root) {
  LOOM_CHECK(root >= 0 && root < size(), CommError, "broadcast: root {} is outside group '{}' of size {}", root, name(),
             size());
  if (size() == 1) return Work::done();
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  opts.timeout = impl_->timeout;
  return issue(*impl_, "broadcast", [&] { return impl_->pg->broadcast(tensors, opts); });
}

Work Group::allgather(std::vector<at::Tensor>& output, const at::Tensor& input) {
  LOOM_CHECK(static_cast<int>(output.size()) == size(), CommError,
             "allgather: {} output tensors for group '{}' of size {}", output.size(), name(), size());
  if (size() == 1) {
    output[0].copy_(input);
    return Work::done();
  }
  std::vector<std::vector<at::Tensor>> out{output};
  std::vector<at::Tensor> in{input};
  c10d::AllgatherOptions opts;
  opts.timeout = impl_->timeout;
  // c10d copies results into `out`, whose tensors share storage with `output`.
  return issue(*impl_, "allgather", [&] { return impl_->pg->allgather(out, in, opts); });
}

Work Group::barrier() {
  if (size() == 1) return Work::done();
  c10d::BarrierOptions opts;
  opts.timeout = impl_->timeout;
  return issue(*impl_, "barrier", [&] { return impl_->pg->barrier(opts); });
}

RingCollectives& Group::Impl::ring_engine() {
  std::call_once(ring_once, [this] {
    ring = std::make_unique<RingCollectives>(pg, name, global_ranks, timeout, RingCollectives::Options{});
  });
  return *ring;
}

Work Group::reduce_scatter(const at::Tensor& buffer, const std::vector<int64_t>& counts) {
  check_sharded_args("reduce_scatter", name(), size(), buffer, counts);
  if (size() == 1) return Work::done();
  if (impl_->shm) return issue(*impl_, "reduce_scatter", [&] { return impl_->shm->reduce_scatter(buffer, counts); });
  return issue(*impl_, "reduce_scatter", [&] { return impl_->ring_engine().reduce_scatter(buffer, counts); });
}

Work Group::all_gather(const at::Tensor& buffer, const std::vector<int64_t>& counts) {
  check_sharded_args("all_gather", name(), size(), buffer, counts);
  if (size() == 1) return Work::done();
  if (impl_->shm) return issue(*impl_, "all_gather", [&] { return impl_->shm->all_gather(buffer, counts); });
  return issue(*impl_, "all_gather", [&] { return impl_->ring_engine().all_gather(buffer, counts); });
}

// Point-to-point goes through the shared-memory rings when the group has them (every
// member on this machine: shm_p2p.h), one CPU tensor per message; the rings hand a
// message that does not fit to Gloo themselves. Every member decides alike (the rings
// exist on all or none), so a receive always looks where the send put the message.
ShmP2p* Group::Impl::p2p_for(const std::vector<at::Tensor>& tensors) const {
  if (!shm || !shm->p2p() || tensors.size() != 1) return nullptr;
  const at::Tensor& t = tensors[0];
  return t.defined() && t.device().is_cpu() && t.layout() == at::kStrided ? shm->p2p() : nullptr;
}

Work Group::send(std::vector<at::Tensor>& tensors, int dst, int tag) {
  return issue(*impl_, fmt::format("send to rank {} (tag {})", global_rank(dst), tag), [&] {
    ShmP2p* p2p = impl_->p2p_for(tensors);
    return p2p ? p2p->send(tensors[0], dst, tag, *impl_->pg) : impl_->pg->send(tensors, dst, tag);
  });
}

Work Group::recv(std::vector<at::Tensor>& tensors, int src, int tag) {
  return issue(*impl_, fmt::format("recv from rank {} (tag {})", global_rank(src), tag), [&] {
    ShmP2p* p2p = impl_->p2p_for(tensors);
    return p2p ? p2p->recv(tensors[0], src, tag, *impl_->pg) : impl_->pg->recv(tensors, src, tag);
  });
}

Work Group::recv_any(std::vector<at::Tensor>& tensors, int tag) {
  return issue(*impl_, fmt::format("recv from any rank (tag {})", tag), [&] {
    ShmP2p* p2p = impl_->p2p_for(tensors);
    return p2p ? p2p->recv_any(tensors[0], tag, *impl_->pg) : impl_->pg->recvAnysource(tensors, tag);
  });
}

Group::MessageCounts Group::message_counts() const {
  ShmP2p* p2p = impl_->shm ? impl_->shm->p2p() : nullptr;
  return p2p ? MessageCounts{p2p->sent_in_rings(), p2p->sent_redirected()} : MessageCounts{};
}

int64_t Group::shared_memory_bytes() const { return impl_->shm ? impl_->shm->allocated_bytes() : 0; }

double Group::allreduce_sum(double value) {
  std::vector<at::Tensor> t{at::full({1}, value, at::kDouble)};
  allreduce(t).wait();
  return t[0].item<double>();
}

std::vector<double> Group::allgather_values(double value) {
  std::vector<at::Tensor> out;
  for (int r = 0; r < size(); ++r) out.push_back(at::zeros({1}, at::kDouble));
  allgather(out, at::full({1}, value, at::kDouble)).wait();
  std::vector<double> values;
  for (const auto& t : out) values.push_back(t.item<double>());
  return values;
}

double Group::broadcast_value(double value, int root) { return broadcast_values({value}, root).at(0); }

std::vector<double> Group::broadcast_values(const std::vector<double>& values, int root) {
  std::vector<at::Tensor> t{at::empty({static_cast<int64_t>(values.size())}, at::kDouble)};
  std::copy(values.begin(), values.end(), t[0].data_ptr<double>());
  broadcast(t, root).wait();
  const double* out = t[0].data_ptr<double>();
  return std::vector<double>(out, out + values.size());
}

}  // namespace loom::comm
