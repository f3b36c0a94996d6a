// The transport settings of a parameter-server job that a user sets: timeouts, message
// limits, the job's token and CURVE key pair (security), and the ZeroMQ context to share.
// The transport itself (zmq_van.h) and the wire protocol (protocol.h) are private to loom.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace loom::ps {

class ZmqContext;  // the ZeroMQ I/O threads (private: src/loom/ps/zmq_van.h), shared by the vans of one process

struct Limits {
  uint64_t max_payload_bytes = 1ull << 31;
};

// The smallest payload limit a job uses: room for tokens, commands and error reasons.
constexpr uint64_t kMinPayloadLimit = 64 * 1024;

// The limits of a job whose slices are at most `slice_bytes` (shard_plan.h: no payload
// is larger than one slice): max(slice_bytes, kMinPayloadLimit). The van hands the limit
// to ZeroMQ (ZMQ_MAXMSGSIZE), so it bounds what any peer, even one that has not said
// hello, can make ZeroMQ allocate for one frame (see docs/parameter-server.md).
Limits limits_for_slices(int64_t slice_bytes);

// A CURVE key pair as Z85 text (40 characters each). The secret key must never reach a
// log, an error message or a command line: pass it through the environment.
struct CurveKeys {
  std::string public_key, secret_key;
  bool empty() const { return secret_key.empty(); }
  // A new random key pair (zmq_curve_keypair). CommError when ZeroMQ lacks CURVE.
  static CurveKeys generate();
  // The pair of a Z85 secret key. ConfigError (not quoting the key) when it is not one.
  static CurveKeys from_secret(std::string_view secret_z85);
};

// The environment variables that hand the job's key pair to its processes: the secret
// key itself (Z85), or a file holding it that only its owner may read (mode 0600).
constexpr const char* kCurveSecretEnv = "LOOM_PS_CURVE_SECRET";
constexpr const char* kCurveKeyFileEnv = "LOOM_PS_CURVE_KEY_FILE";

// True when this libzmq has CURVE (zmq_has("curve")).
bool curve_available();
// Whether an endpoint stays on this machine: inproc://, ipc://, or tcp:// on 127.0.0.0/8,
// ::1, localhost or the interface lo.
bool is_local_endpoint(const std::string& endpoint);
// Writes a new key pair's secret key to `path` (created with mode 0600; an existing file
// is an error) for kCurveKeyFileEnv. Returns the pair. Errors name the path only.
CurveKeys write_curve_key_file(const std::string& path);

struct VanOptions {
  // Handshake and send timeout (a send blocks only while the peer's queue is full).
  std::chrono::milliseconds timeout{300000};
  // Enforced on receive. A frame over the limit is dropped by ZeroMQ before it is
  // allocated (over TCP the connection is closed and re-established: the sender's
  // message is lost and it sees a timeout); a header declaring more is answered with
  // Op::error.
  Limits limits;
  std::string token;  // shared secret; empty = none
  // The job's CURVE key pair (both ends use the same one); empty: plain TCP, which a van
  // refuses for an endpoint off this machine unless `insecure` (--insecure).
  CurveKeys curve;
  bool insecure = false;
  int io_threads = 1;                   // for the van's own context (ignored when `context` is given)
  std::shared_ptr<ZmqContext> context;  // null: the van makes its own

  // Defaults, with `token` from LOOM_PS_TOKEN and `curve` from kCurveSecretEnv or
  // kCurveKeyFileEnv when set (ConfigError naming the variable or file, never the key,
  // when unusable: not a key, or a file others may read). Reads the environment: call it
  // once at start-up (entry points), not deep inside a loop.
  static VanOptions from_environment();
  // The same, with the variables looked up through `get` (tests pass a map).
  static VanOptions from_lookup(const std::function<std::optional<std::string>(const std::string&)>& get);
};

}  // namespace loom::ps
