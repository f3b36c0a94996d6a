// Mesh: a job's ranks arranged as D data-parallel replicas x P pipeline stages, with a
// c10d subgroup for each pipeline and for each stage across the replicas.
//
// Rank layout (pipeline-major): rank = d * P + s, for replica d in [0, D), stage s in
// [0, P). With D = 2, P = 2:
//
//              stage 0   stage 1
//   replica 0  rank 0    rank 1     <- pipeline group "pipeline 0": ranks {0, 1}
//   replica 1  rank 2    rank 3     <- pipeline group "pipeline 1": ranks {2, 3}
//                ^          ^
//   stage groups "stage 0": {0, 2}, "stage 1": {1, 3}: the data-parallel groups
//
// In pipeline(), group rank = stage; in stage_group(), group rank = replica. A
// pipeline's stages talk point-to-point inside it; a stage's replicas average gradients
// inside its stage group. Construction is collective over the whole Context (every rank
// builds its pipeline group, then its stage group, each over its own PrefixStore) and
// throws ConfigError when the world size is not D * P.
// Ownership: holds the subgroups; the Context must outlive it. Usable on its own by
// people who compose their own dp x pp loop.
#pragma once

#include <memory>
#include <string>

namespace loom::comm {
class Context;
class Group;
}  // namespace loom::comm

namespace loom::hybrid {

struct MeshShape {
  int dp = 1;  // replicas
  int pp = 1;  // stages per replica
};

class Mesh {
 public:
  Mesh(comm::Context& context, MeshShape shape);
  ~Mesh();
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;

  int dp() const { return shape_.dp; }
  int pp() const { return shape_.pp; }
  int replica() const { return replica_; }
  int stage() const { return stage_; }
  // The global rank of (replica, stage).
  int rank_of(int replica, int stage) const;

  comm::Group& pipeline();     // this rank's replica: its P stages
  comm::Group& stage_group();  // this rank's stage in every replica: D ranks

  // "dp 2 x pp 2: pipelines {0,1} {2,3}; stage groups {0,2} {1,3}"
  std::string describe() const;

 private:
  MeshShape shape_;
  int replica_ = 0, stage_ = 0;
  std::shared_ptr<comm::Group> pipeline_, stage_group_;
};

}  // namespace loom::hybrid
