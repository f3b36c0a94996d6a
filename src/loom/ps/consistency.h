// ConsistencyRule: when a push becomes an update, and when a pull is answered. One object
// per server, made once at start-up from ServerOptions::consistency (make_consistency_rule,
// the one place that switches on the mode); the server's dispatch asks it and never the
// mode itself. The three rules (ServerOptions in server.h has the user's view):
//  * sync: for each key, the pushes of step c from all W workers are summed in worker
//    order, each weighted by its batch share (a push is added once every lower worker's
//    push is in, so only the last ones wait for the step's last push), and applied as one
//    update; the key's version becomes c + 1. A pull with clock c is answered once the
//    version is >= c. A step whose pushes are incomplete after the step timeout is a
//    CommError naming the missing workers (check_progress). Silent workers are never
//    dropped.
//  * async: every push is applied when it arrives, scaled by its weight; pulls are
//    answered at once. Silent workers are dropped (liveness.h).
//  * ssp (bounded staleness s): pushes as in async; a pull with clock c is answered once
//    every counted worker (not done, not dropped) has pushed at least c - s steps of that
//    key.
//
// Thread-safety: none; used by the server's serving thread only.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "loom/ps/liveness.h"
#include "loom/ps/server.h"
#include "loom/ps/slot.h"

namespace loom::ps {

struct ConsistencyOptions {
  Consistency mode = Consistency::sync;
  int num_workers = 1;
  int staleness = 0;                               // ssp
  std::chrono::milliseconds step_timeout{300000};  // sync
  ServerClock clock;                               // sync: when a step's first push came
  std::string who;                                 // "parameter server 0", for errors
};

// What the server does with a gradient push the rule has seen.
struct PushResult {
  std::string refusal;  // why it is refused ("": accepted, count it and acknowledge it)
  bool update = false;  // slot.combined now holds the gradient of an update due now
};

class ConsistencyRule {
 public:
  virtual ~ConsistencyRule() = default;

  // For logs: "sync mode", "ssp mode, staleness 2".
  virtual std::string describe() const = 0;
  // A key the server has just created (from an init push or a checkpoint).
  virtual void add_key(uint64_t key, const Slot& slot) = 0;
  // A gradient push whose key, tensor and weight the server has checked. `grad` may view
  // the received message: a rule that keeps it past this call keeps the message alive.
  virtual PushResult push(uint64_t key, Slot& slot, uint32_t worker, int64_t clock, double weight, at::Tensor grad) = 0;
  // True: a push is acknowledged before the update it completes (the update is every
  // worker's); false: after it (the acknowledgement means "applied").
  virtual bool ack_before_update() const = 0;
  // Whether a pull of `key` with `clock` can be answered now.
  virtual bool ready(uint64_t key, const Slot& slot, int64_t clock, const Liveness& workers) const = 0;
  // True when no update of a key can happen while its values travel in answer to a pull
  // (sync: the next update needs this worker's next push), so they go without a copy.
  virtual bool values_stable_while_sent() const = 0;
  // Whether the server drops workers that stay silent (liveness.h).
  virtual bool drops_silent_workers() const = 0;
  // Throws CommError when a key can no longer make progress (sync: a step's pushes
  // incomplete after the step timeout, naming the missing workers).
  virtual void check_progress() const = 0;
};

std::unique_ptr<ConsistencyRule> make_consistency_rule(const ConsistencyOptions& options);

}  // namespace loom::ps
