// Which ranks of a parameter-server job are servers, and where they announce themselves.
//
// A job of N processes with S servers run inside it: ranks 0 .. N-S-1 are the workers
// (their own process group, worker w = rank w), ranks N-S .. N-1 the servers (server i
// = rank N-S+i). With external servers (`loom ps-server`, started on their own) every
// rank of the job is a worker. Server i announces its endpoint in the job's rendezvous
// store under server_store_key(i); workers read it there.
#pragma once

#include <string>

namespace loom::ps {

struct JobLayout {
  int workers = 1;
  int servers = 1;
  bool external_servers = false;
  // -1 when `rank` is a worker.
  int server_index(int rank) const { return external_servers || rank < workers ? -1 : rank - workers; }
};

// The layout of a job of `world_size` processes. ConfigError (naming --servers) when no
// rank is left for a worker.
JobLayout job_layout(int world_size, int servers, bool external_servers);

// The processes to launch for `workers` workers and `servers` servers.
int job_size(int workers, int servers, bool external_servers);

// The key under which server `index` announces its endpoint in the rendezvous store.
std::string server_store_key(int index);

}  // namespace loom::ps
