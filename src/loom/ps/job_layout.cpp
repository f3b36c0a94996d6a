#include "loom/ps/job_layout.h"

#include "loom/core/error.h"

namespace loom::ps {

JobLayout job_layout(int world_size, int servers, bool external_servers) {
  JobLayout l;
  l.servers = servers;
  l.external_servers = external_servers;
  l.workers = world_size - (external_servers ? 0 : servers);
  LOOM_CHECK(l.workers >= 1, ConfigError,
             "--strategy ps: a job of {} processes has no room for {} servers and a worker", world_size, servers);
  return l;
}

int job_size(int workers, int servers, bool external_servers) { return workers + (external_servers ? 0 : servers); }

std::string server_store_key(int index) { return "loom/ps/server/" + std::to_string(index); }

}  // namespace loom::ps
