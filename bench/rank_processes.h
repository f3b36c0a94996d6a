// For benchmark programs that measure real rank processes on this machine: the program
// re-executes itself once per rank and waits for them.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "loom/core/dist_env.h"
#include "loom/launch/free_port.h"

namespace loom::bench {

// Runs `world` copies of this program (/proc/self/exe) at once, copy r with the
// arguments `args` followed by --rank r --world `world` --port P, P a free loopback port
// for their rendezvous (the same for all). Returns whether every copy exited with 0.
inline bool run_rank_processes(const std::string& program, int world, const std::vector<std::string>& args) {
  const int port = loom::launch::pick_free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<std::string> all{program};
      all.insert(all.end(), args.begin(), args.end());
      for (const std::string& a : {std::string("--rank"), std::to_string(r), std::string("--world"),
                                   std::to_string(world), std::string("--port"), std::to_string(port)}) {
        all.push_back(a);
      }
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv("/proc/self/exe", argv.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  bool ok = true;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  return ok;
}

// The environment of rank `rank` of such a program: all ranks on this machine, meeting at
// 127.0.0.1:`port`.
inline loom::DistEnv rank_env(int rank, int world, int port) {
  loom::DistEnv env;
  env.rank = rank;
  env.world_size = world;
  env.local_rank = rank;
  env.local_world_size = world;
  env.master_addr = "127.0.0.1";
  env.master_port = port;
  return env;
}

}  // namespace loom::bench
