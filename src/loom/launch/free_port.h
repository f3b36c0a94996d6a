// Picking a free TCP port for a single-node job's rendezvous (MASTER_PORT).
#pragma once

namespace loom::launch {

// A TCP port that was free on all local interfaces a moment ago (the kernel's choice for
// a socket bound to port 0). Another process may take it before the workers bind it;
// the launcher therefore picks a fresh one for every attempt. Throws LaunchError when
// no socket can be bound.
int pick_free_port();

}  // namespace loom::launch
