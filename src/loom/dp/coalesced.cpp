#include "loom/dp/coalesced.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cstdint>

#include "loom/comm/group.h"
#include "loom/core/error.h"

namespace loom::dp {

namespace {

// Groups of tensor indices that share a dtype and fit in one chunk, in first-seen order.
std::vector<std::vector<size_t>> chunk(const std::vector<at::Tensor>& tensors, int64_t chunk_bytes) {
  std::vector<std::vector<size_t>> chunks;
  std::vector<int64_t> bytes;
  std::vector<at::ScalarType> dtypes;
  std::vector<size_t> open;  // per dtype: index of its open chunk
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    LOOM_CHECK(t.defined() && t.layout() == at::kStrided, ConfigError,
               "coalesced collective: tensor #{} is undefined or not dense", i);
    const int64_t b = t.numel() * static_cast<int64_t>(t.element_size());
    size_t c = SIZE_MAX;
    for (size_t o : open) {
      if (dtypes[o] == t.scalar_type()) c = o;
    }
    if (c == SIZE_MAX || (bytes[c] > 0 && bytes[c] + b > chunk_bytes)) {
      if (c != SIZE_MAX) open.erase(std::find(open.begin(), open.end(), c));
      c = chunks.size();
      chunks.emplace_back();
      bytes.push_back(0);
      dtypes.push_back(t.scalar_type());
      open.push_back(c);
    }
    chunks[c].push_back(i);
    bytes[c] += b;
  }
  return chunks;
}

at::Tensor flatten(const std::vector<at::Tensor>& tensors, const std::vector<size_t>& indices) {
  std::vector<at::Tensor> flat;
  flat.reserve(indices.size());
  for (size_t i : indices) flat.push_back(tensors[i].reshape({-1}));
  return at::cat(flat);
}

void unflatten(const at::Tensor& flat, const std::vector<at::Tensor>& tensors, const std::vector<size_t>& indices) {
  int64_t offset = 0;
  for (size_t i : indices) {
    const at::Tensor& t = tensors[i];
    t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

template <typename Issue>
void run_chunked(comm::Group& group, const std::vector<at::Tensor>& tensors, int64_t chunk_bytes, Issue&& issue,
                 double scale) {
  at::NoGradGuard no_grad;
  const auto chunks = chunk(tensors, chunk_bytes);
  std::vector<std::vector<at::Tensor>> flats(chunks.size());
  std::vector<comm::Work> works;
  works.reserve(chunks.size());
  for (size_t c = 0; c < chunks.size(); ++c) {
    at::Tensor flat = flatten(tensors, chunks[c]);
    if (scale != 1.0) flat.mul_(scale);
    flats[c] = {flat};
    works.push_back(issue(group, flats[c]));
  }
  // Wait for all before touching any tensor, so a failure leaves the inputs unchanged.
  for (auto& w : works) w.wait();
  for (size_t c = 0; c < chunks.size(); ++c) unflatten(flats[c][0], tensors, chunks[c]);
}

}  // namespace

void broadcast_coalesced(comm::Group& group, const std::vector<at::Tensor>& tensors, int root, int64_t chunk_bytes) {
  run_chunked(
      group, tensors, chunk_bytes, [root](comm::Group& g, std::vector<at::Tensor>& t) { return g.broadcast(t, root); },
      1.0);
}

void allreduce_coalesced(comm::Group& group, const std::vector<at::Tensor>& tensors, double scale,
                         int64_t chunk_bytes) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    LOOM_CHECK(at::isFloatingType(tensors[i].scalar_type()), ConfigError,
               "allreduce_coalesced: tensor #{} is not floating point", i);
  }
  run_chunked(
      group, tensors, chunk_bytes,
      [](comm::Group& g, std::vector<at::Tensor>& t) { return g.allreduce(t, comm::ReduceOp::sum); }, scale);
}

}  // namespace loom::dp
