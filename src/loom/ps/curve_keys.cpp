// The job's CURVE key pair: generation, key files and the environment (contracts in
// loom/ps/zmq_van.h, "Security" in docs/parameter-server.md).
#include <zmq.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "loom/core/error.h"
#include "loom/ps/zmq_van.h"

namespace loom::ps {

bool curve_available() { return zmq_has("curve") == 1; }

CurveKeys CurveKeys::generate() {
  LOOM_CHECK(curve_available(), CommError,
             "this libzmq has no CURVE security (zmq_has(\"curve\") is false): install a libzmq5 built with libsodium");
  char public_key[41] = {}, secret_key[41] = {};
  LOOM_CHECK(zmq_curve_keypair(public_key, secret_key) == 0, CommError, "cannot generate a CURVE key pair: {}",
             zmq_strerror(zmq_errno()));
  return {public_key, secret_key};
}

CurveKeys CurveKeys::from_secret(std::string_view secret_z85) {
  LOOM_CHECK(curve_available(), CommError,
             "this libzmq has no CURVE security (zmq_has(\"curve\") is false): install a libzmq5 built with libsodium");
  const std::string secret(secret_z85);
  char public_key[41] = {};
  uint8_t decoded[32];
  LOOM_CHECK(secret.size() == 40 && zmq_z85_decode(decoded, secret.c_str()) != nullptr &&
                 zmq_curve_public(public_key, secret.c_str()) == 0,
             ConfigError, "the CURVE secret key is not 40 characters of Z85 text ({} characters given)", secret.size());
  return {public_key, secret};
}

bool is_local_endpoint(const std::string& endpoint) {
  if (endpoint.rfind("inproc://", 0) == 0 || endpoint.rfind("ipc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  std::string host = endpoint.substr(6);
  const size_t colon = host.rfind(':');
  if (colon != std::string::npos) host.resize(colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host.rfind("127.", 0) == 0 || host == "::1" || host == "localhost" || host == "lo";
}

CurveKeys write_curve_key_file(const std::string& path) {
  const CurveKeys keys = CurveKeys::generate();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  LOOM_CHECK(fd >= 0, ConfigError, "cannot create the key file {}: {}", path, std::strerror(errno));
  const std::string line = keys.secret_key + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    LOOM_THROW(ConfigError, "cannot write the key file {}: {}", path, std::strerror(err));
  }
  return keys;
}

namespace {

CurveKeys curve_keys_from_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LOOM_CHECK(fd >= 0, ConfigError, "{}={}: cannot open it: {}", kCurveKeyFileEnv, path, std::strerror(errno));
  struct stat st {};
  const bool stat_ok = ::fstat(fd, &st) == 0;
  char buffer[128];
  const ssize_t n = stat_ok ? ::read(fd, buffer, sizeof buffer) : -1;
  ::close(fd);
  LOOM_CHECK(stat_ok && n >= 0, ConfigError, "{}={}: cannot read it: {}", kCurveKeyFileEnv, path, std::strerror(errno));
  LOOM_CHECK((st.st_mode & 077) == 0, ConfigError,
             "{}={}: the key file has mode {:03o}, others may read it: make it 0600 (chmod 600)", kCurveKeyFileEnv,
             path, st.st_mode & 0777);
  std::string secret(buffer, static_cast<size_t>(n));
  while (!secret.empty() && std::isspace(static_cast<unsigned char>(secret.back()))) secret.pop_back();
  try {
    return CurveKeys::from_secret(secret);
  } catch (const ConfigError& e) {
    LOOM_THROW(ConfigError, "{}={}: {}", kCurveKeyFileEnv, path, e.what());
  }
}

}  // namespace

VanOptions VanOptions::from_environment() {
  return from_lookup([](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (!value) return std::nullopt;
    return std::string(value);
  });
}

VanOptions VanOptions::from_lookup(const std::function<std::optional<std::string>(const std::string&)>& get) {
  VanOptions options;
  if (const auto token = get("LOOM_PS_TOKEN")) options.token = *token;
  const auto secret = get(kCurveSecretEnv);
  const auto file = get(kCurveKeyFileEnv);
  if (secret && !secret->empty()) {
    try {
      options.curve = CurveKeys::from_secret(*secret);
    } catch (const ConfigError& e) {
      LOOM_THROW(ConfigError, "{}: {}", kCurveSecretEnv, e.what());
    }
  } else if (file && !file->empty()) {
    options.curve = curve_keys_from_file(*file);
  }
  return options;
}

}  // namespace loom::ps
