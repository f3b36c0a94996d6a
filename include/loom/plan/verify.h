// plan::measure: runs one `loom train` job and reports the rate it trained at, so
// `loom plan --verify K` can set the planner's predictions beside measured numbers.
//
//   plan::MeasureOptions o;
//   o.loom = launch::self_executable();
//   plan::MeasuredRun r = plan::measure({"--model", "mlp", "--strategy", "allreduce", "--nproc", "2"}, o);
//   if (r.ok) fmt::print("{:.0f} samples/s\n", r.samples_per_s); else fmt::print("{}\n", r.error);
//
// The run is `<loom> train <train_args> --steps S --log-every L --metrics <dir>/m.jsonl
// --no-eval --progress off`, a child process in its own process group, stdin from
// /dev/null, its stdout discarded and its stderr kept for the error line. It gets this
// process's environment without the variables of an enclosing job (torchrun's RANK,
// WORLD_SIZE, LOCAL_RANK, ..., MASTER_ADDR/PORT; Slurm's and Open MPI's rank variables;
// LOOM_LAUNCHED, LOOM_RESTART_COUNT, LOOM_MAX_RESTARTS, LOOM_FAULT_INJECT, LOOM_PS_TOKEN,
// LOOM_PS_CURVE_KEY_FILE), so `--nproc N` in train_args starts its own N workers as a
// user's run would. Settings that change speed (LOOM_SHM_ALLREDUCE, LOOM_MALLOC_TUNING,
// OMP_NUM_THREADS, ...) pass through.
//
// train_args describe the job only (strategy, model, data, batch, processes, ...): the
// length of the run and its outputs are measure's. train_args that set one of
// --steps, --time-limit, --log-every, --metrics, --eval / --no-eval, --progress, or an
// output (--save, --save-scripted, --trace, --checkpoint-dir, --resume,
// --record-indices, --ps-save) are rejected with a ConfigError naming the flag, before
// anything runs (a --config file's keys lose to measure's flags, which are given on
// the command line).
//
// The steady-state rate is bench/benchlib.py's timed_rate: over the step records after
// the warm-up, the samples of each record's window (samples_per_s x step_ms x steps) over
// the seconds of those windows. The timed part starts at the first record at or after
// warmup_steps (exactly there when log_every divides warmup_steps).
//
// Failure is a value, not an exception: a run that exits non-zero, is killed, runs out of
// time_s (SIGTERM to its process group, SIGKILL 10 s later) or writes no usable metrics
// gives ok = false and a one-line error. Bad MeasureOptions or train_args throw
// ConfigError; a program that cannot be started throws LaunchError. SIGINT, SIGTERM or
// SIGHUP arriving while a run is under way are passed on to it (so Ctrl-C leaves no
// training job behind) and then end measure with a LaunchError naming the signal.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom::plan {

struct MeasureOptions {
  std::string loom;  // the `loom` executable (e.g. launch::self_executable()); required
  int64_t steps = 40;
  int64_t warmup_steps = 10;  // steps before the timed part (0 <= warmup_steps < steps)
  int64_t log_every = 5;
  double timeout_s = 600;  // the whole run, start-up included
  std::string work_dir;    // temporary files; empty: a fresh directory under TMPDIR, removed after
};

struct MeasuredRun {
  bool ok = false;
  double samples_per_s = 0;          // steady state: the step records after warmup_steps
  double summary_samples_per_s = 0;  // the summary record's (every step, warm-up included)
  double wall_s = 0;                 // start to exit of the child process
  // One line when !ok: the run's last stderr line, after its first error line when that
  // is another ("rank 1: data error: cannot open x.npy ...; loom: launch error: rank 1
  // exited with code 1"); a timeout says so.
  std::string error;
};

MeasuredRun measure(const std::vector<std::string>& train_args, const MeasureOptions& options);

// The steady-state samples/s of a --metrics file's text (JSON lines) after
// `warmup_steps`. Throws ConfigError naming what is missing when no step record lies
// after the warm-up or a record lacks step, samples_per_s or step_ms.
double steady_samples_per_s(const std::string& metrics_jsonl, int64_t warmup_steps);

}  // namespace loom::plan
