// calibrate(): one launcher job of `loom calibrate-rank` ranks (calibrate_rank.cpp),
// whose rank 0 writes the measured cluster file into a temporary directory.
#include "loom/plan/calibrate.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/launch/launcher.h"

namespace loom::plan {

namespace {

// A fresh directory under TMPDIR (or /tmp), removed with everything in it on scope exit.
class TempDir {
 public:
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/loom-calibrate-XXXXXX";
    LOOM_CHECK(::mkdtemp(pattern.data()) != nullptr, Error, "calibrate: cannot create a directory {}: {}", pattern,
               std::strerror(errno));
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

Cluster calibrate(const CalibrateOptions& options) {
  LOOM_CHECK(options.processes >= 2, ConfigError,
             "calibrate: --nproc must be at least 2 to measure communication, got {}", options.processes);
  LOOM_CHECK(options.threads >= 1, ConfigError, "calibrate: --threads must be at least 1, got {}", options.threads);
  LOOM_CHECK(options.budget_s > 0, ConfigError, "calibrate: the time budget must be positive, got {} s",
             options.budget_s);
  LOOM_CHECK(options.max_repeats >= 1, ConfigError, "calibrate: max_repeats must be at least 1, got {}",
             options.max_repeats);
  LOOM_CHECK(!options.self.empty() && ::access(options.self.c_str(), X_OK) == 0, ConfigError,
             "calibrate: the loom executable '{}' cannot be run", options.self);
  const auto start = std::chrono::steady_clock::now();
  log::info("calibrate: measuring this machine with {} processes of {} thread(s), about {} s plus start-up",
            options.processes, options.threads, options.budget_s);

  const TempDir dir;
  const std::string out = dir.path() + "/measured.toml";
  launch::LaunchOptions lo;
  lo.nproc = options.processes;
  lo.prefix_output = false;  // rank 0's log lines already carry the rank
  // The flags of `loom calibrate-rank` (tools/loom/cmd_calibrate_rank.cpp).
  lo.command = {options.self,    "calibrate-rank",
                "--out",         out,
                "--threads",     std::to_string(options.threads),
                "--budget",      fmt::format("{}", options.budget_s),
                "--max-repeats", std::to_string(options.max_repeats),
                "--timeout",     fmt::format("{}", options.timeout.count() / 1000.0)};
  if (!options.bench_slowdown.empty()) {
    lo.command.insert(lo.command.end(), {"--bench-slowdown", options.bench_slowdown});
  }
  const launch::LaunchResult result = launch::supervise(lo);
  LOOM_CHECK(result.success(), LaunchError, "calibrate: {}", result.message);

  const Cluster measured = Cluster::load(out);
  Cluster c = Cluster::this_machine(options.processes);
  c.process_base_bytes = measured.process_base_bytes;
  c.process_speeds = measured.process_speeds;
  c.intra = measured.intra;
  c.inter = measured.inter;
  c.intra_shm = measured.intra_shm;
  c.contention = measured.contention;
  c.allreduce_shm = measured.allreduce_shm;
  c.allreduce_tcp = measured.allreduce_tcp;
  c.rs_ag_shm = measured.rs_ag_shm;
  c.rs_ag_tcp = measured.rs_ag_tcp;
  c.ps = measured.ps;
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  c.measured_on = fmt::format("{}, {:%Y-%m-%d %H:%M} UTC: {} processes of {} thread(s), {} cores, {:.1f} s", c.name,
                              utc, options.processes, options.threads, c.cores_per_node, took);
  if (!options.bench_slowdown.empty()) c.measured_on += fmt::format(", --bench-slowdown {}", options.bench_slowdown);
  log::info("calibrate: done in {:.1f} s", took);
  return c;
}

}  // namespace loom::plan
