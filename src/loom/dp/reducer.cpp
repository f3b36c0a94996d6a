#include "loom/dp/reducer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <atomic>
#include <cmath>

#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/dp/gradient_shards.h"
#include "loom/trace/tracer.h"

namespace loom::dp {
namespace {

// A tensor over `flat`'s storage at `offset` with `sizes`, contiguous. Made with set_()
// rather than narrow()/view() so it is not an autograd view: libtorch's
// Optimizer::zero_grad() calls detach_() on gradients, which views refuse.
at::Tensor alias_into(const at::Tensor& flat, int64_t offset, at::IntArrayRef sizes) {
  at::Tensor t = at::empty({0}, flat.options());
  t.set_(flat.storage(), flat.storage_offset() + offset, sizes);
  return t;
}

bool is_alias_of(const at::Tensor& grad, const at::Tensor& slice) {
  return grad.data_ptr() == slice.data_ptr() && grad.is_contiguous() && grad.numel() == slice.numel();
}

}  // namespace

// Sharded: buckets communicating at once; one more waits for the oldest before it takes
// memory, which bounds the gradient memory in flight.
constexpr size_t kInFlight = 2;

struct Reducer::BucketState {
  // Gradients (+ the trailer in the last bucket, unless sharded), in the parameters'
  // dtype; allocated on first use. Sharded: borrowed from the pool (`pooled`) per step.
  at::Tensor flat;
  at::Tensor pooled;
  int64_t lo = 0, hi = 0;  // sharded: the range of the flat gradient space it holds
  GradBucket view;         // what the hook sees: `flat`, its parameters and their offsets
  comm::Work work;
  size_t pending = 0;  // gradients not yet ready in this step
  bool launched = false;
  int64_t launch_us = 0;
  // Set by the communication thread when the allreduce completes (tracing only); shared
  // so a late callback never writes into a rebuilt bucket.
  std::shared_ptr<std::atomic<int64_t>> done_us;
};

// Runs after the parameter's AccumulateGrad node has written param.grad.
class Reducer::Hook : public torch::autograd::FunctionPostHook {
 public:
  Hook(Reducer* reducer, size_t index) : reducer_(reducer), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    reducer_->on_grad_ready(index_);
    return outputs;
  }

 private:
  Reducer* reducer_;
  size_t index_;
};

Reducer::Reducer(std::vector<std::string> names, std::vector<at::Tensor> params, comm::Group& group,
                 ReducerOptions options)
    : names_(std::move(names)),
      params_(std::move(params)),
      group_(group),
      options_(options),
      weight_(1.0 / group.size()) {
  LOOM_CHECK(names_.size() == params_.size(), ConfigError, "reducer: {} names for {} parameters", names_.size(),
             params_.size());
  default_hook_ = !options_.hook;
  if (!options_.hook) options_.hook = hooks::allreduce();
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor& p = params_[i];
    LOOM_CHECK(p.defined() && p.requires_grad() && p.is_leaf(), ConfigError,
               "parameter '{}' is not a leaf tensor that requires grad", names_[i]);
    LOOM_CHECK(p.layout() == at::kStrided && at::isFloatingType(p.scalar_type()), ConfigError,
               "parameter '{}' must be a dense floating-point tensor", names_[i]);
    info_.push_back(ParamInfo{names_[i], p.numel(), p.scalar_type()});
  }
  build(reverse_order(params_.size()));
  // Hooks last: from here on, backward calls into this object.
  for (size_t i = 0; i < params_.size(); ++i) {
    auto acc = torch::autograd::impl::grad_accumulator(params_[i]);
    LOOM_CHECK(acc != nullptr, ConfigError, "parameter '{}' has no gradient accumulator", names_[i]);
    hook_keys_.push_back(acc->add_post_hook(std::make_unique<Hook>(this, i)));
    accumulators_.push_back(std::move(acc));
  }
}

Reducer::~Reducer() {
  // In-flight allreduces (only after a failed step) keep their tensors alive themselves.
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
}

void Reducer::set_weight(double weight) {
  LOOM_CHECK(std::isfinite(weight) && weight >= 0, ConfigError,
             "gradient weight (this rank's share of the batch) must be finite and >= 0, got {}", weight);
  std::lock_guard<std::mutex> lock(mutex_);
  weight_ = weight;
}

double Reducer::weight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return weight_;
}

void Reducer::set_sync(bool sync) {
  std::lock_guard<std::mutex> lock(mutex_);
  sync_ = sync;
}

bool Reducer::sync() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return sync_;
}

const BucketPlan& Reducer::plan() const { return plan_; }

bool Reducer::rebuilt() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return rebuilt_;
}

void Reducer::set_comm_hook(CommHook hook) {
  LOOM_CHECK(hook != nullptr, ConfigError, "register_comm_hook: the hook is empty");
  std::lock_guard<std::mutex> lock(mutex_);
  LOOM_CHECK(!custom_hook_, ConfigError, "register_comm_hook: a communication hook is registered already");
  LOOM_CHECK(!started_, ConfigError,
             "register_comm_hook: register the hook before the first synchronised backward (every rank must reduce "
             "every bucket the same way)");
  options_.hook = std::move(hook);
  custom_hook_ = true;
  default_hook_ = false;
}

int64_t Reducer::synced_steps() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return synced_steps_;
}

at::Tensor Reducer::shard(const std::vector<int64_t>& counts) {
  std::lock_guard<std::mutex> lock(mutex_);
  LOOM_CHECK(!shards_, ConfigError, "shard_gradients: the gradients are sharded already");
  LOOM_CHECK(!started_, ConfigError, "shard_gradients: call it before the first synchronised backward");
  LOOM_CHECK(static_cast<int>(counts.size()) == group_.size(), ConfigError,
             "shard_gradients: {} counts for a group of {} members", counts.size(), group_.size());
  int64_t total = 0;
  for (const ParamInfo& p : info_) {
    LOOM_CHECK(p.dtype == info_.front().dtype, ConfigError,
               "shard_gradients: every parameter must have one dtype ('{}' is {}, '{}' is {})", info_.front().name,
               c10::toString(info_.front().dtype), p.name, c10::toString(p.dtype));
    total += p.numel;
  }
  shards_ = std::make_unique<GradientShards>(counts, group_.rank(), total, params_.front().options());
  build(reverse_order(params_.size()));
  return shards_->shard();
}

int64_t Reducer::gradient_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (shards_) return shards_->bytes();
  int64_t bytes = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    if (buckets_[b].flat.defined()) bytes += plan_.buckets[b].numel * buckets_[b].flat.element_size();
  }
  return bytes;
}

void Reducer::build(const std::vector<size_t>& order) {
  plan_ = plan_buckets(info_, order, options_.caps);
  buckets_.clear();
  buckets_.resize(plan_.buckets.size());
  std::vector<int64_t> flat_at(params_.size());  // each parameter's place in the flat space
  for (size_t i = 1; i < params_.size(); ++i) flat_at[i] = flat_at[i - 1] + info_[i - 1].numel;
  int64_t largest = 0;
  for (size_t b = 0; b < plan_.buckets.size(); ++b) {
    Bucket& spec = plan_.buckets[b];
    BucketState& s = buckets_[b];
    if (shards_) {
      // See Note [sharded gradients]: a run of consecutive parameters, laid out in
      // registration order, is one range of the flat space.
      s.lo = flat_at[spec.params.front()];
      for (size_t index : spec.params) s.lo = std::min(s.lo, flat_at[index]);
      s.hi = s.lo + spec.numel;
      for (size_t k = 0; k < spec.params.size(); ++k) {
        spec.offsets[k] = flat_at[spec.params[k]] - s.lo;
        LOOM_CHECK(spec.offsets[k] + info_[spec.params[k]].numel <= spec.numel, ConfigError,
                   "shard_gradients: bucket {} does not hold one range of the flat gradient space", b);
      }
      if (spec.params.size() > 1) largest = std::max(largest, spec.numel);  // one parameter: its gradient
    }
    s.view.index = b;
    for (size_t index : spec.params) s.view.parameters.push_back(params_[index]);
    s.view.offsets = spec.offsets;
  }
  if (shards_) {
    shards_->set_buffer_numel(largest);
    trailer_ = at::zeros({static_cast<int64_t>(params_.size())}, params_.front().options().requires_grad(false));
  } else {
    // Gradients live in the buckets (see Note [gradients as bucket views]): move any that
    // exist (e.g. the reduced gradients of the step that triggered the rebuild).
    at::NoGradGuard no_grad;
    for (size_t index = 0; index < params_.size(); ++index) {
      at::Tensor& grad = params_[index].mutable_grad();
      if (!grad.defined()) continue;
      acquire_buffer(plan_.bucket_of[index]);
      at::Tensor view = grad_view(index);
      view.copy_(grad);
      grad = view;
    }
  }
  ready_.assign(params_.size(), 0);
  fired_.assign(params_.size(), 0);
  contributed_.assign(params_.size(), 0);
  reset_step();
}

void Reducer::reset_step() {
  std::fill(ready_.begin(), ready_.end(), 0);
  std::fill(fired_.begin(), fired_.end(), 0);
  std::fill(contributed_.begin(), contributed_.end(), 0);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    BucketState& s = buckets_[b];
    s.pending = plan_.buckets[b].params.size();
    s.launched = false;
    s.work = comm::Work();
    s.launch_us = 0;
    s.done_us.reset();
    if (shards_) {  // only after a failed step: kept buckets gave theirs back
      shards_->release(std::move(s.pooled));
      s.pooled = at::Tensor();
      s.flat = s.view.buffer = at::Tensor();
    }
  }
  in_flight_.clear();
  trailer_work_ = comm::Work();
  arrival_.clear();
  next_launch_ = 0;
  error_ = nullptr;
}

void Reducer::on_grad_ready(size_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!sync_) return;
  started_ = true;
  try {
    if (ready_[index]) {
      LOOM_THROW(ModelError,
                 "parameter '{}' received its gradient twice in one step: call finish() after every synchronised "
                 "backward, or accumulate under no_sync()",
                 names_[index]);
    }
    arrival_.push_back(index);
    mark_ready(index, /*fired=*/true);
    launch_ready();
  } catch (...) {
    // Never throw into the autograd engine; finish() rethrows after the collectives.
    if (!error_) error_ = std::current_exception();
  }
}

at::Tensor Reducer::grad_view(size_t index) const {
  const size_t b = plan_.bucket_of[index];
  return alias_into(buckets_[b].flat, plan_.buckets[b].offsets[plan_.slot_of[index]], params_[index].sizes());
}

void Reducer::acquire_buffer(size_t b) {
  BucketState& s = buckets_[b];
  if (s.flat.defined()) return;
  const Bucket& spec = plan_.buckets[b];
  if (shards_) {
    // See Note [sharded gradients]: bounded memory in flight; a one-parameter bucket uses
    // its gradient (fill_sharded).
    while (in_flight_.size() >= kInFlight) keep_oldest();
    if (spec.params.size() == 1) return;
    at::Tensor buffer = shards_->take_free();
    if (!buffer.defined()) buffer = shards_->allocate();
    s.pooled = buffer;
    s.flat = buffer.narrow(0, 0, spec.numel);
  } else {
    const int64_t trailer = b + 1 == buckets_.size() ? static_cast<int64_t>(params_.size()) : 0;
    s.flat = at::zeros({spec.numel + trailer}, params_[spec.params.front()].options().requires_grad(false));
  }
  s.view.buffer = s.flat;
}

void Reducer::keep_oldest() {
  const size_t b = in_flight_.front();
  in_flight_.pop_front();
  BucketState& s = buckets_[b];
  s.work.wait();
  shards_->keep(s.flat, s.lo, s.hi);
  shards_->release(std::move(s.pooled));
  s.pooled = at::Tensor();
  s.flat = s.view.buffer = at::Tensor();
}

void Reducer::mark_ready(size_t index, bool fired) {
  at::NoGradGuard no_grad;
  const size_t b = plan_.bucket_of[index];
  const Bucket& spec = plan_.buckets[b];
  BucketState& s = buckets_[b];
  acquire_buffer(b);
  at::Tensor& grad = params_[index].mutable_grad();
  ready_[index] = 1;
  fired_[index] = fired ? 1 : 0;
  --s.pending;
  if (grad.defined()) {
    LOOM_CHECK(
        grad.layout() == at::kStrided && grad.scalar_type() == info_[index].dtype && grad.numel() == info_[index].numel,
        ModelError, "gradient of parameter '{}' is sparse or has the wrong dtype or size", names_[index]);
    contributed_[index] = 1;
  }
  if (shards_) {
    fill_sharded(index, b, grad);
    return;
  }
  at::Tensor slice = s.flat.narrow(0, spec.offsets[plan_.slot_of[index]], info_[index].numel);
  if (grad.defined()) {
    if (weight_ == 0) {
      slice.zero_();  // not 0 * grad: a NaN from an empty batch must not spread
    } else if (is_alias_of(grad, slice)) {
      if (weight_ != 1) slice.mul_(weight_);
    } else {
      // First step, or the user replaced param.grad: copy in, then alias.
      at::mul_out(slice, grad.reshape({-1}), at::Scalar(weight_));
      grad = grad_view(index);
    }
  } else {
    slice.zero_();
  }
}

void Reducer::fill_sharded(size_t index, size_t b, at::Tensor& grad) {
  // See Note [sharded gradients].
  BucketState& s = buckets_[b];
  const Bucket& spec = plan_.buckets[b];
  if (spec.params.size() == 1 && grad.defined() && grad.is_contiguous()) {
    // A bucket of one parameter is its gradient, reduced in place: no buffer, no copy.
    if (weight_ == 0) {
      grad.zero_();  // not 0 * grad: a NaN from an empty batch must not spread
    } else if (weight_ != 1) {
      grad.mul_(weight_);
    }
    s.flat = grad.view({-1});
  } else {
    if (!s.flat.defined()) s.flat = at::empty({spec.numel}, params_[index].options().requires_grad(false));
    at::Tensor slice = s.flat.narrow(0, spec.offsets[plan_.slot_of[index]], info_[index].numel);
    if (!grad.defined() || weight_ == 0) {
      slice.zero_();
    } else {
      at::mul_out(slice, grad.reshape({-1}), at::Scalar(weight_));
    }
  }
  s.view.buffer = s.flat;
  grad = at::Tensor();  // only the shard outlives the step
}

// Note [last bucket from finish]: over shared memory the last bucket is launched by
// finish(), not by the autograd hook of its last gradient. finish() waits for it at once,
// so the waiting thread runs it itself (ShmCollectives: progress in wait) instead of
// waking the group's thread, which on a machine whose cores all compute waits for one
// while backward tears its graph down, and then wakes this thread again. Issue 19's
// traces: docs/performance.md. Over Gloo the hook launches it, to overlap that teardown:
// so also with a registered communication hook, which may send the bucket anywhere (the
// fp16 compression hook's halves go through Gloo), and for a dtype shared memory does
// not sum.
void Reducer::launch_ready(bool finishing) {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    const bool last = next_launch_ + 1 == buckets_.size();
    const at::ScalarType dtype = plan_.buckets[next_launch_].dtype;
    if (last && !finishing && default_hook_ && group_.uses_shared_memory() &&
        (dtype == at::kFloat || dtype == at::kDouble)) {
      return;
    }
    launch(next_launch_++);
  }
}

void Reducer::launch(size_t b) {
  at::NoGradGuard no_grad;
  BucketState& s = buckets_[b];
  const Bucket& spec = plan_.buckets[b];
  const bool last = b + 1 == buckets_.size();
  if (last) {
    // The trailer: per parameter, 1 if this rank produced its gradient (or, with
    // find_unused_parameters, had any gradient for it). See Note [bucket launch order].
    const auto& flags = options_.find_unused_parameters ? contributed_ : fired_;
    std::vector<float> values(flags.begin(), flags.end());
    at::Tensor trailer = shards_ ? trailer_ : s.flat.narrow(0, spec.numel, static_cast<int64_t>(values.size()));
    trailer.copy_(at::tensor(values, at::kFloat));
  }
  s.launched = true;
  s.launch_us = trace::Tracer::now_us();
  if (shards_) {
    // See Note [sharded gradients]: another hook reduces in full; this rank keeps its part.
    s.work = default_hook_ ? group_.reduce_scatter(s.flat, shards_->counts_within(s.lo, s.hi))
                           : options_.hook(group_, s.view);
    in_flight_.push_back(b);
    if (last) {
      std::vector<at::Tensor> io{trailer_};
      trailer_work_ = group_.allreduce(io);
    }
  } else {
    s.work = options_.hook(group_, s.view);
  }
  if (options_.tracer && options_.tracer->enabled()) {
    s.done_us = std::make_shared<std::atomic<int64_t>>(0);
    s.work.on_completion([done = s.done_us] { done->store(trace::Tracer::now_us()); });
  }
}

void Reducer::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!sync_ || buckets_.empty()) return;
  started_ = true;
  at::NoGradGuard no_grad;
  // Gradients that never arrived: zeros, or what param.grad already holds (e.g. from
  // no_sync steps). A rank with weight 0 counts them as produced: it contributes nothing.
  try {
    for (size_t b = next_launch_; b < buckets_.size(); ++b) {
      for (size_t index : plan_.buckets[b].params) {
        if (ready_[index]) continue;
        arrival_.push_back(index);
        mark_ready(index, /*fired=*/weight_ == 0);
      }
    }
    launch_ready(/*finishing=*/true);
  } catch (...) {
    if (!error_) error_ = std::current_exception();
  }

  std::exception_ptr comm_error;
  const bool tracing = options_.tracer && options_.tracer->enabled();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    BucketState& s = buckets_[b];
    if (!s.launched) continue;
    try {
      s.work.wait();
    } catch (...) {
      if (!comm_error) comm_error = std::current_exception();
    }
    if (tracing && s.done_us) {
      // The callback may still be on its way when wait() returns: then "now" is as good.
      const int64_t done = s.done_us->load();
      options_.tracer->record(fmt::format("allreduce bucket {}", b), "comm", s.launch_us,
                              done > 0 ? done : trace::Tracer::now_us(), /*lane=*/1);
    }
  }
  if (shards_ && buckets_.back().launched) {
    try {
      trailer_work_.wait();
      while (!in_flight_.empty()) keep_oldest();
    } catch (...) {
      if (!comm_error) comm_error = std::current_exception();
    }
  }
  if (comm_error || error_) {
    const auto e = comm_error ? comm_error : error_;
    reset_step();
    std::rethrow_exception(e);
  }

  const std::vector<int64_t> counts = read_trailer();
  if (!options_.find_unused_parameters) {
    for (int64_t c : counts) {
      if (c != group_.size()) throw_missing(counts);
    }
  }
  if (!shards_) attach_reduced_grads(counts);  // sharded: the shard holds them

  ++synced_steps_;
  const std::vector<size_t> order = arrival_;
  reset_step();
  if (!rebuilt_ && !shards_) rebuild_from_rank0(order);  // sharded: the layout stays
}

std::vector<int64_t> Reducer::read_trailer() {
  const at::Tensor trailer =
      (shards_ ? trailer_
               : buckets_.back().flat.narrow(0, plan_.buckets.back().numel, static_cast<int64_t>(params_.size())))
          .to(at::kDouble);
  std::vector<int64_t> counts(params_.size());
  const double* data = trailer.data_ptr<double>();
  for (size_t i = 0; i < counts.size(); ++i) counts[i] = std::llround(data[i]);
  return counts;
}

void Reducer::throw_missing(const std::vector<int64_t>& counts) {
  const int world = group_.size();
  std::string list;
  int listed = 0, missing = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == world) continue;
    ++missing;
    if (listed < 6) {
      list += fmt::format("{}'{}' (on {} of {} ranks)", listed ? ", " : "", names_[i], world - counts[i], world);
      ++listed;
    }
  }
  if (missing > listed) list += fmt::format(" and {} more", missing - listed);
  reset_step();
  LOOM_THROW(ModelError,
             "parameters received no gradient in this step: {}; make every parameter take part in the loss, or set "
             "find_unused_parameters",
             list);
}

void Reducer::attach_reduced_grads(const std::vector<int64_t>& counts) {
  for (size_t index = 0; index < params_.size(); ++index) {
    // With find_unused_parameters, a parameter no rank had a gradient for keeps its
    // param.grad as it is (undefined stays undefined), as in PyTorch.
    if (counts[index] == 0) continue;
    at::Tensor& grad = params_[index].mutable_grad();
    // Gradients mark_ready saw already alias their slice and hold the reduced values;
    // the others (undefined, or skipped by a weight-0 rank) are pointed at it now.
    if (!grad.defined() || grad.data_ptr() != grad_view(index).data_ptr()) grad = grad_view(index);
  }
}

void Reducer::rebuild_from_rank0(const std::vector<size_t>& local_order) {
  // See Note [bucket rebuild].
  std::vector<int64_t> values(local_order.begin(), local_order.end());
  std::vector<at::Tensor> io{at::tensor(values, at::kLong)};
  group_.broadcast(io, 0).wait();
  const int64_t* data = io[0].data_ptr<int64_t>();
  std::vector<size_t> order(data, data + io[0].numel());
  build(order);
  rebuilt_ = true;
}

}  // namespace loom::dp
