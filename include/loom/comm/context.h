// Context: this process's place in a job and its communicators.
//
// create() performs the rendezvous: rank 0 hosts a TCPStore at MASTER_ADDR:MASTER_PORT,
// every rank connects to it (or all use one InProcessStore when the ranks are threads), and a Gloo process group over
// all ranks is built on the chosen network interface. World size 1 uses an in-memory store and opens no socket to
// anyone. Every blocking step (store connect, store get, each collective) is bounded by ContextOptions::timeout and
// fails with an error naming this rank and the step.
//
// Ownership: shared (std::shared_ptr); Groups made by new_group() stay valid while the
// Context lives. Thread-safety: new_group() and the store calls are not thread-safe
// with each other; Groups are (see group.h).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "loom/comm/group.h"
#include "loom/core/dist_env.h"

namespace loom::comm {

// A rendezvous store for ranks that are threads of one process (unit tests, as Gloo's
// own tests do, or a program that runs its ranks as threads): give every rank's
// ContextOptions the same one, and no store socket is opened and no port is picked in
// advance. Gloo's own connections between the ranks still use loopback TCP.
class InProcessStore {
 public:
  InProcessStore();
  ~InProcessStore();
  struct Impl;  // holds the c10d store (context.cpp)
  Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

struct ContextOptions {
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
  // Network interface for Gloo (e.g. "eth0"). Empty: loopback when the master is on
  // loopback, else the local address that routes to the master.
  std::string interface;
  // Host a TCPStore even for a world of one process (which otherwise uses an in-memory
  // store): for jobs whose other processes join only the store (parameter servers).
  bool always_host_store = false;
  // Rendezvous through this store instead of a TCPStore at MASTER_ADDR:MASTER_PORT
  // (every rank must be a thread of this process and share it). Null: TCP.
  std::shared_ptr<InProcessStore> in_process_store;
  // Allreduce through shared memory when every rank of a group is on this machine
  // (dense fp32/fp64; comm/shm_collectives.h); false keeps Gloo for every collective.
  // The CLI sets it from LOOM_SHM_ALLREDUCE (0 = false).
  bool shared_memory = true;
};

class Context {
 public:
  static std::shared_ptr<Context> create(const DistEnv& env, const ContextOptions& options = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  const DistEnv& env() const { return env_; }
  std::chrono::milliseconds timeout() const { return options_.timeout; }

  // A Context that only uses the rendezvous store, as a client: it never hosts the
  // store, builds no process group and is not counted in the world (for processes
  // outside the training world, e.g. parameter servers; env.rank / world_size are only
  // labels here). world() and new_group() throw ConfigError.
  static std::shared_ptr<Context> join_store(const DistEnv& env, const ContextOptions& options = {});

  // The group of all ranks.
  Group& world();

  // Builds a group of `ranks` (global ranks, sorted, no duplicates). Call on exactly the
  // member ranks, in the same order of new_group calls; `name` must be unique per job.
  // Returns nullptr... never: throws ConfigError when this rank is not a member.
  std::shared_ptr<Group> new_group(const std::vector<int>& ranks, const std::string& name);

  // The rendezvous store, for small control data (addresses, flags). get() waits up to
  // the timeout for the key and then throws TimeoutError naming the key.
  void store_set(const std::string& key, const std::string& value);
  std::string store_get(const std::string& key);
  // Atomically adds `delta` and returns the new value.
  int64_t store_add(const std::string& key, int64_t delta);

  struct Impl;

 private:
  Context(DistEnv env, ContextOptions options);
  DistEnv env_;
  ContextOptions options_;
  std::unique_ptr<Impl> impl_;
  std::shared_ptr<Group> world_;
};

}  // namespace loom::comm
