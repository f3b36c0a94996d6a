// CURVE: only a client holding the job's key pair is served; off this machine without a
// key a van refuses unless insecure; the key from the environment or a private file.
#include <map>
#include <optional>
#include <string>

#include "unit/ps/van_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;

// ---- CURVE -------------------------------------------------------------------------

// Over a real TCP socket: a client holding the job's key pair is served; a client with
// no key, with another job's key pair, or with the server's public key but a key pair
// of its own (what ZAP is there for) never gets a message to loom.
TEST(VanCurve, OnlyAClientHoldingTheJobsKeyIsServed) {
  ASSERT_TRUE(loom::ps::curve_available()) << "libzmq without CURVE: scripts/install-deps.sh";
  const CurveKeys job = CurveKeys::generate();
  VanOptions with_key;
  with_key.timeout = kWait;
  with_key.curve = job;
  EchoServer server("tcp://127.0.0.1:0", with_key);
  ZmqClientVan good(server.endpoint(), 0, with_key);
  auto buffer = std::make_shared<std::string>(4096, 'c');
  good.send(raw_push(0, 1, buffer->size()), Payload{buffer->data(), buffer->size(), buffer});
  auto reply = good.receive(kWait);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->payload.bytes(), *buffer);

  VanOptions no_key;
  no_key.timeout = 500ms;
  try {
    ZmqClientVan plain(server.endpoint(), 1, no_key);
    ADD_FAILURE() << "a client without the key was served";
  } catch (const loom::TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find(server.endpoint()), std::string::npos) << e.what();
  }
  VanOptions other_job = no_key;
  other_job.curve = CurveKeys::generate();
  try {
    ZmqClientVan other(server.endpoint(), 2, other_job);
    ADD_FAILURE() << "a client with another job's key was served";
  } catch (const loom::TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("with this job's CURVE key"), std::string::npos) << e.what();
  }
  {  // knows the server's public key, but holds only a key pair of its own
    const CurveKeys own = CurveKeys::generate();
    ZmqContext context;
    RawSocket raw(context.impl().context.handle(), ZMQ_DEALER);
    raw.socket().set(zmq::sockopt::curve_serverkey, job.public_key);
    raw.socket().set(zmq::sockopt::curve_publickey, own.public_key);
    raw.socket().set(zmq::sockopt::curve_secretkey, own.secret_key);
    raw.connect(server.endpoint());
    raw.send({header_bytes(hello_from(3)), ""});
    EXPECT_FALSE(raw.receive(500ms)) << "ZAP admitted a client that does not hold the job's secret key";
  }
  EXPECT_EQ(server.hellos().size(), 1u) << "only the client with the key said hello";
  EXPECT_EQ(server.rejected(), 0) << "nothing from the others reached loom";
  EXPECT_EQ(server.failure(), "");
}

TEST(VanCurve, OffThisMachineWithoutAKeyIsRefusedUnlessInsecure) {
  VanOptions plain;
  plain.timeout = kWait;
  try {
    ZmqServerVan van("tcp://0.0.0.0:0", plain);
    ADD_FAILURE() << "listened off loopback without a key";
  } catch (const loom::ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("refusing to listen on tcp://0.0.0.0:0"), std::string::npos) << what;
    EXPECT_NE(what.find("LOOM_PS_CURVE_KEY_FILE"), std::string::npos) << what;
    EXPECT_NE(what.find("--insecure"), std::string::npos) << what;
  }
  try {
    ZmqClientVan client("tcp://192.0.2.1:5555", 0, plain);
    ADD_FAILURE() << "connected off loopback without a key";
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("refusing to connect to the parameter server at tcp://192.0.2.1:5555"),
              std::string::npos)
        << e.what();
  }
  VanOptions insecure = plain;
  insecure.insecure = true;
  EXPECT_NO_THROW(ZmqServerVan("tcp://0.0.0.0:0", insecure));
  VanOptions keyed = plain;
  keyed.curve = CurveKeys::generate();
  EXPECT_NO_THROW(ZmqServerVan("tcp://0.0.0.0:0", keyed));

  for (const char* local : {"inproc://x", "ipc:///tmp/x", "tcp://127.0.0.1:0", "tcp://127.8.9.10:5", "tcp://[::1]:5",
                            "tcp://localhost:5", "tcp://lo:5"}) {
    EXPECT_TRUE(loom::ps::is_local_endpoint(local)) << local;
  }
  for (const char* remote : {"tcp://0.0.0.0:0", "tcp://*:5", "tcp://10.0.0.2:5", "tcp://[::]:5", "tcp://eth0:5",
                             "tcp://128.0.0.1:5", "udp://127.0.0.1:5"}) {
    EXPECT_FALSE(loom::ps::is_local_endpoint(remote)) << remote;
  }
}

// The variables a test "sets", looked up by VanOptions::from_lookup (no setenv).
using Vars = std::map<std::string, std::string>;
VanOptions van_options_from(const Vars& vars) {
  return VanOptions::from_lookup([&](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  });
}

TEST(VanCurve, KeyFromTheEnvironmentOrAPrivateFile) {
  const CurveKeys keys = CurveKeys::generate();
  EXPECT_EQ(CurveKeys::from_secret(keys.secret_key).public_key, keys.public_key);
  EXPECT_EQ(van_options_from({{"LOOM_PS_CURVE_SECRET", keys.secret_key}}).curve.public_key, keys.public_key);
  const std::string bad = "this is not a Z85 key but it is secret!!";
  try {
    van_options_from({{"LOOM_PS_CURVE_SECRET", bad}});
    ADD_FAILURE() << "took a bad key";
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("LOOM_PS_CURVE_SECRET"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find(bad), std::string::npos) << "the error quotes the key: " << e.what();
  }

  const std::string path = ::testing::TempDir() + "/loom-van-key-" + std::to_string(::getpid());
  ::unlink(path.c_str());
  const CurveKeys written = loom::ps::write_curve_key_file(path);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_THROW(loom::ps::write_curve_key_file(path), loom::ConfigError) << "overwrote an existing key file";
  EXPECT_EQ(van_options_from({{"LOOM_PS_CURVE_KEY_FILE", path}}).curve.public_key, written.public_key);
  ::chmod(path.c_str(), 0644);
  try {
    van_options_from({{"LOOM_PS_CURVE_KEY_FILE", path}});
    ADD_FAILURE() << "took a key file others may read";
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("mode 644"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  ::unlink(path.c_str());
  EXPECT_TRUE(van_options_from({}).curve.empty());
}

}  // namespace
}  // namespace loom::ps
