#include "loom/comm/context.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <cstring>

#include "loom/comm/c10d_impl.h"
#include "loom/core/error.h"
#include "loom/core/log.h"

namespace loom::comm {

struct Context::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  std::shared_ptr<::gloo::transport::Device> device;
  std::shared_ptr<Liveness> liveness;  // stamps this rank; names silent peers on timeouts
};

struct InProcessStore::Impl {
  c10::intrusive_ptr<c10d::HashStore> store = c10::make_intrusive<c10d::HashStore>();
};

InProcessStore::InProcessStore() : impl_(std::make_unique<Impl>()) {}
InProcessStore::~InProcessStore() = default;

namespace {

bool is_loopback(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  return host.rfind("127.", 0) == 0;
}

// The local address the kernel would use to reach `host` (a UDP "connect" sends nothing).
std::string local_address_towards(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  LOOM_CHECK(rc == 0 && res, CommError, "cannot resolve MASTER_ADDR '{}': {}", host, gai_strerror(rc));
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  std::string out;
  if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_in local{};
    socklen_t len = sizeof(local);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      char buf[INET_ADDRSTRLEN];
      if (inet_ntop(AF_INET, &local.sin_addr, buf, sizeof(buf))) out = buf;
    }
  }
  if (fd >= 0) ::close(fd);
  freeaddrinfo(res);
  LOOM_CHECK(!out.empty(), CommError, "no network route from this host to MASTER_ADDR {}", host);
  return out;
}

std::shared_ptr<::gloo::transport::Device> make_device(const DistEnv& env, const ContextOptions& opts) {
  try {
    if (!opts.interface.empty()) return c10d::ProcessGroupGloo::createDeviceForInterface(opts.interface);
    if (env.world_size == 1 || is_loopback(env.master_addr)) {
      return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
    }
    const std::string local = local_address_towards(env.master_addr, env.master_port);
    log::debug("gloo: using local address {} (route to {})", local, env.master_addr);
    return c10d::ProcessGroupGloo::createDeviceForHostname(local);
  } catch (const loom::Error&) {
    throw;
  } catch (const std::exception& e) {
    LOOM_THROW(CommError, "cannot open a Gloo device on {}: {}",
               opts.interface.empty() ? "the default address" : "interface " + opts.interface,
               std::string(e.what()).substr(0, std::string(e.what()).find('\n')));
  }
}

c10::intrusive_ptr<c10d::Store> make_store(const DistEnv& env, const ContextOptions& opts, bool member = true) {
  if (opts.in_process_store) {
    auto store = opts.in_process_store->impl().store;
    store->setTimeout(opts.timeout);  // get() and wait() on it are bounded as on a TCPStore
    return store;
  }
  if (env.world_size == 1 && member && !opts.always_host_store) return c10::make_intrusive<c10d::HashStore>();
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(env.master_port);
  so.isServer = member && env.rank == 0;
  if (member) so.numWorkers = env.world_size;
  so.waitWorkers = member;
  so.timeout = opts.timeout;
  try {
    auto store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    store->setTimeout(opts.timeout);
    return store;
  } catch (const std::exception& e) {
    std::string cause = e.what();
    cause = cause.substr(0, cause.find('\n'));
    if (so.isServer) {
      LOOM_THROW(CommError, "cannot host the rendezvous store on port {} (MASTER_PORT): {}", env.master_port, cause);
    }
    LOOM_THROW(CommError, "cannot join the rendezvous store at {}:{} within {} s: {}", env.master_addr, env.master_port,
               opts.timeout.count() / 1000.0, cause);
  }
}

std::shared_ptr<Group> make_group(c10::intrusive_ptr<c10d::Store> store,
                                  std::shared_ptr<::gloo::transport::Device> device, int rank,
                                  std::vector<int> global_ranks, std::string name, const ContextOptions& options,
                                  std::shared_ptr<Liveness> liveness) {
  const auto timeout = options.timeout;
  ShmCollectives::Options shm_options;
  shm_options.enabled = options.shared_memory;
  auto opts = c10d::ProcessGroupGloo::Options::create();
  opts->timeout = timeout;
  opts->devices.push_back(std::move(device));
  auto impl = std::make_shared<Group::Impl>();
  impl->name = std::move(name);
  impl->global_ranks = std::move(global_ranks);
  impl->timeout = timeout;
  impl->liveness = std::move(liveness);
  try {
    impl->pg =
        c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, static_cast<int>(impl->global_ranks.size()), opts);
    impl->shm = ShmCollectives::connect(*store, rank, static_cast<int>(impl->global_ranks.size()), impl->name,
                                        impl->global_ranks, timeout, shm_options);
  } catch (const std::exception&) {
    rethrow_as_comm_error(fmt::format("connecting group '{}'", impl->name));
  }
  return std::make_shared<Group>(std::move(impl));
}

}  // namespace

Context::Context(DistEnv env, ContextOptions options)
    : env_(std::move(env)), options_(std::move(options)), impl_(std::make_unique<Impl>()) {}

Context::~Context() = default;

std::shared_ptr<Context> Context::create(const DistEnv& env, const ContextOptions& options) {
  LOOM_CHECK(options.timeout.count() > 0, ConfigError, "--timeout must be positive");
  std::shared_ptr<Context> ctx(new Context(env, options));
  ctx->impl_->store = make_store(env, options);
  ctx->impl_->device = make_device(env, options);
  ctx->impl_->liveness = Liveness::start(env);
  std::vector<int> all(env.world_size);
  for (int i = 0; i < env.world_size; ++i) all[i] = i;
  auto world_store = c10::make_intrusive<c10d::PrefixStore>("loom/world", ctx->impl_->store);
  ctx->world_ = make_group(world_store, ctx->impl_->device, env.rank, all, "world", options, ctx->impl_->liveness);
  return ctx;
}

std::shared_ptr<Context> Context::join_store(const DistEnv& env, const ContextOptions& options) {
  LOOM_CHECK(options.timeout.count() > 0, ConfigError, "--timeout must be positive");
  std::shared_ptr<Context> ctx(new Context(env, options));
  ctx->impl_->store = make_store(env, options, /*member=*/false);
  return ctx;
}

Group& Context::world() {
  LOOM_CHECK(world_ != nullptr, ConfigError, "rank {} joined only the rendezvous store: it has no process group",
             rank());
  return *world_;
}

std::shared_ptr<Group> Context::new_group(const std::vector<int>& ranks, const std::string& name) {
  LOOM_CHECK(impl_->device != nullptr, ConfigError, "rank {} joined only the rendezvous store: it cannot build groups",
             rank());
  LOOM_CHECK(!ranks.empty(), ConfigError, "group '{}' has no ranks", name);
  LOOM_CHECK(
      std::is_sorted(ranks.begin(), ranks.end()) && std::adjacent_find(ranks.begin(), ranks.end()) == ranks.end(),
      ConfigError, "group '{}': ranks must be sorted and unique", name);
  LOOM_CHECK(ranks.front() >= 0 && ranks.back() < world_size(), ConfigError,
             "group '{}': rank {} is outside the world of {}", name, ranks.back(), world_size());
  const auto it = std::find(ranks.begin(), ranks.end(), rank());
  LOOM_CHECK(it != ranks.end(), ConfigError, "group '{}' was built on rank {}, which is not a member", name, rank());
  const int group_rank = static_cast<int>(it - ranks.begin());
  auto store = c10::make_intrusive<c10d::PrefixStore>("loom/group/" + name, impl_->store);
  return make_group(store, impl_->device, group_rank, ranks, name, options_, impl_->liveness);
}

void Context::store_set(const std::string& key, const std::string& value) {
  try {
    impl_->store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
  } catch (const std::exception&) {
    rethrow_as_comm_error(fmt::format("store set '{}'", key));
  }
}

std::string Context::store_get(const std::string& key) {
  try {
    const auto v = impl_->store->get(key);  // waits up to the store timeout
    return std::string(v.begin(), v.end());
  } catch (const std::exception&) {
    rethrow_as_comm_error(fmt::format("store get '{}'", key));
  }
}

int64_t Context::store_add(const std::string& key, int64_t delta) {
  try {
    return impl_->store->add(key, delta);
  } catch (const std::exception&) {
    rethrow_as_comm_error(fmt::format("store add '{}'", key));
  }
}

}  // namespace loom::comm
