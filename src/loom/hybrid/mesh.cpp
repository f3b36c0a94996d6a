#include "loom/hybrid/mesh.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <vector>

#include "loom/comm/context.h"
#include "loom/core/error.h"

namespace loom::hybrid {

Mesh::Mesh(comm::Context& context, MeshShape shape) : shape_(shape) {
  LOOM_CHECK(shape.dp >= 1 && shape.pp >= 1, ConfigError, "a mesh needs --dp >= 1 and --pp >= 1, got {} x {}", shape.dp,
             shape.pp);
  LOOM_CHECK(context.world_size() == shape.dp * shape.pp, ConfigError,
             "--dp {} x --pp {} needs {} processes, but the job has {}", shape.dp, shape.pp, shape.dp * shape.pp,
             context.world_size());
  replica_ = context.rank() / shape.pp;
  stage_ = context.rank() % shape.pp;
  std::vector<int> pipeline_ranks, stage_ranks;
  for (int s = 0; s < shape.pp; ++s) pipeline_ranks.push_back(rank_of(replica_, s));
  for (int d = 0; d < shape.dp; ++d) stage_ranks.push_back(rank_of(d, stage_));
  pipeline_ = context.new_group(pipeline_ranks, fmt::format("pipeline {}", replica_));
  stage_group_ = context.new_group(stage_ranks, fmt::format("stage {}", stage_));
}

Mesh::~Mesh() = default;

int Mesh::rank_of(int replica, int stage) const { return replica * shape_.pp + stage; }

comm::Group& Mesh::pipeline() { return *pipeline_; }
comm::Group& Mesh::stage_group() { return *stage_group_; }

std::string Mesh::describe() const {
  std::string pipelines, stages;
  for (int d = 0; d < shape_.dp; ++d) {
    std::vector<int> r;
    for (int s = 0; s < shape_.pp; ++s) r.push_back(rank_of(d, s));
    pipelines += fmt::format(" {{{}}}", fmt::join(r, ","));
  }
  for (int s = 0; s < shape_.pp; ++s) {
    std::vector<int> r;
    for (int d = 0; d < shape_.dp; ++d) r.push_back(rank_of(d, s));
    stages += fmt::format(" {{{}}}", fmt::join(r, ","));
  }
  return fmt::format("dp {} x pp {}: pipelines{}; stage groups{}", shape_.dp, shape_.pp, pipelines, stages);
}

}  // namespace loom::hybrid
