// The path of the running program, so that a command (`loom train --nproc N`) can
// launch copies of itself as workers.
#pragma once

#include <string>

namespace loom::launch {

// Absolute path of the running executable (readlink of /proc/self/exe). Throws
// LaunchError when it cannot be determined.
std::string self_executable();

}  // namespace loom::launch
