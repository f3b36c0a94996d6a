// ShardPlan: which parameter server holds which part of which parameter.
//
// Every parameter is cut into slices of at most `slice_bytes` (default 1 MiB; BytePS's
// 4 MiB left a step of 4 MiB at 0.35-0.42 of raw TCP's goodput here against 0.63-0.69:
// docs/performance-ps.md), of nearly equal size, so one big tensor is spread over
// several servers and its pushes and pulls proceed in parallel. Slices are then assigned
// to servers largest first, each to the server holding the fewest bytes so far (ties:
// the lowest server index), which balances bytes across servers. A slice's key is its
// index in the plan: parameters in registration order, slices in offset order.
//
// A pure function of its inputs: every worker computes the same plan, and a checkpoint
// written with one plan is read with the same plan (a server checkpoint records the slice
// size, and a load refuses another: server.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace loom::ps {

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t element_bytes = 4;
  int64_t numel() const;
};

struct Slice {
  uint64_t key = 0;
  size_t param = 0;    // index into the tensor list
  int64_t offset = 0;  // first element of the flattened parameter
  int64_t numel = 0;
  int server = 0;
};

struct ShardPlan {
  std::vector<Slice> slices;  // by key
  std::vector<std::vector<uint64_t>> keys_of_param;
  std::vector<int64_t> server_bytes;  // bytes held by each server
};

// ConfigError when num_servers < 1 or slice_bytes < element size.
ShardPlan plan_shards(const std::vector<TensorSpec>& tensors, int num_servers, int64_t slice_bytes);

// "2 servers, 5 slices: server 0 4.00 MiB (3 slices), server 1 3.90 MiB (2 slices)".
std::string describe(const ShardPlan& plan);

}  // namespace loom::ps
