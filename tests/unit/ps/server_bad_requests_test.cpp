// ps::Server refusing bad requests (unknown key, wrong shape or dtype, wrong step, twice
// the same step, weights out of range, worker ids out of range, unknown commands and ops)
// with the reason, while it keeps serving everyone else; and bad ServerOptions.
#include "loom/ps/server.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/core/error.h"
#include "unit/ps/ps_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;

TEST(PsServerBadRequests, AreRefusedWithTheReasonAndTheServerKeepsServing) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerThread s(server_options(ctx, 2, Consistency::sync, sgd(0.1)));
  const std::string ep = s.endpoint();
  const std::vector<TensorSpec> w_only = {{"w", {4, 6}}};  // key 0 alone: one request per op
  Worker w0(model_specs(), worker_options(ctx, {ep}, 0));
  w0.init(initial_values());
  auto v0 = zeros_like_model();
  w0.wait(w0.pull(v0, 0));
  VanOptions raw_options;
  raw_options.context = ctx;
  raw_options.timeout = 3s;
  int64_t rejected = 0;

  {  // unknown key: a worker whose model has a third tensor
    auto specs = model_specs();
    specs.push_back({"extra", {3}});
    Worker bad(specs, worker_options(ctx, {ep}, 1));
    auto into = zeros_like_model();
    into.push_back(torch::zeros({3}));
    expect_comm_error([&] { bad.wait(bad.pull(into, 0)); },
                      {"parameter server 0", ep, "pull of key 2", "unknown key 2"});
    expect_rejected(s.server(), ++rejected);
  }
  {  // wrong shape: [6, 4] for the [4, 6] key
    Worker bad({{"w", {6, 4}}}, worker_options(ctx, {ep}, 1));
    expect_comm_error(
        [&] {
          bad.wait(bad.push({torch::ones({6, 4})}, 0.25, 0));
        },
        {"push of key 0", "key 0 has shape [4, 6], got [6, 4]"});
    expect_rejected(s.server(), ++rejected);
  }
  {  // wrong dtype: f64 values, sent raw (the Worker only sends f32)
    ZmqClientVan raw(ep, 1, raw_options);
    Header h;
    h.op = Op::push;
    h.key = 0;
    h.seq = 42;
    h.clock = 0;
    h.weight = 0.25;
    h.dtype = DType::f64;
    h.ndim = 2;
    h.shape[0] = 4;
    h.shape[1] = 6;
    raw.send(h, Payload::from_string(std::string(24 * 8, '\0')));
    const Message m = reply_to(raw, 42);
    EXPECT_EQ(m.header.op, Op::error);
    EXPECT_NE(std::string(m.payload.bytes()).find("f64"), std::string::npos) << m.payload.bytes();
    expect_rejected(s.server(), ++rejected);
  }
  {  // push for the wrong step (sync mode: the server is at step 0)
    Worker bad(w_only, worker_options(ctx, {ep}, 1));
    expect_comm_error([&] { bad.wait(bad.push({gradients(0, 1)[0]}, 0.25, 3)); }, {"push for step 3", "at step 0"});
    expect_rejected(s.server(), ++rejected);
  }
  {  // push+pull for the wrong step: one refusal, named as the push+pull it was
    Worker bad(w_only, worker_options(ctx, {ep}, 1));
    std::vector<at::Tensor> into{torch::zeros({4, 6})};
    expect_comm_error([&] { bad.wait(bad.push_pull({gradients(0, 1)[0]}, into, 0.25, 3)); },
                      {"push+pull of key 0", "push for step 3", "at step 0"});
    expect_rejected(s.server(), ++rejected);
    EXPECT_TRUE(torch::equal(into[0], torch::zeros({4, 6}))) << "a refused push+pull writes no values";
  }
  {  // an init push that is also a pull: refused, and the key keeps its values
    ZmqClientVan raw(ep, 1, raw_options);
    Header h;
    h.op = Op::push;
    h.flags = kFlagInit | kFlagPull;
    h.key = 1;
    h.seq = 43;
    h.dtype = DType::f32;
    h.ndim = 1;
    h.shape[0] = 6;
    raw.send(h, Payload::from_string(std::string(6 * 4, '\0')));
    const Message m = reply_to(raw, 43);
    EXPECT_EQ(m.header.op, Op::error);
    EXPECT_NE(std::string(m.payload.bytes()).find("an init push cannot also be a pull"), std::string::npos)
        << m.payload.bytes();
    expect_rejected(s.server(), ++rejected);
  }
  {  // the same step twice: worker 0 pushes step 0, then (another socket of) worker 0 again
    w0.wait(w0.push(gradients(0, 0), 0.75, 0));
    Worker again(w_only, worker_options(ctx, {ep}, 0));
    expect_comm_error([&] { again.wait(again.push({gradients(0, 0)[0]}, 0.75, 0)); }, {"worker 0 pushed step 0 twice"});
    expect_rejected(s.server(), ++rejected);
  }
  {  // weight outside [0, 1]
    Worker bad(w_only, worker_options(ctx, {ep}, 1));
    expect_comm_error([&] { bad.wait(bad.push({gradients(0, 1)[0]}, 1.5, 0)); }, {"weight must be in [0, 1]", "1.5"});
    expect_rejected(s.server(), ++rejected);
    expect_comm_error([&] { bad.wait(bad.push({gradients(0, 1)[0]}, -0.25, 0)); }, {"weight must be in [0, 1]"});
    expect_rejected(s.server(), ++rejected);
  }
  {  // worker id out of range: its hello and its request are both refused
    ZmqClientVan raw(ep, 7, raw_options);
    Header h;
    h.op = Op::pull;
    h.key = 0;
    h.seq = 5;
    raw.send(h);
    const Message m = reply_to(raw, 5);
    EXPECT_EQ(m.header.op, Op::error);
    EXPECT_NE(std::string(m.payload.bytes()).find("worker id 7 is out of range"), std::string::npos)
        << m.payload.bytes();
    rejected += 2;
    expect_rejected(s.server(), rejected);
  }
  {  // unknown command
    ZmqClientVan raw(ep, 1, raw_options);
    Header h;
    h.op = Op::command;
    h.seq = 9;
    raw.send(h, Payload::from_string("frobnicate now"));
    const Message m = reply_to(raw, 9);
    EXPECT_EQ(m.header.op, Op::error);
    EXPECT_NE(std::string(m.payload.bytes()).find("unknown command 'frobnicate now'"), std::string::npos)
        << m.payload.bytes();
    expect_rejected(s.server(), ++rejected);
  }
  {  // an op a server never accepts
    ZmqClientVan raw(ep, 1, raw_options);
    Header h;
    h.op = Op::pull_reply;
    h.seq = 11;
    raw.send(h);
    const Message m = reply_to(raw, 11);
    EXPECT_EQ(m.header.op, Op::error);
    EXPECT_NE(std::string(m.payload.bytes()).find("pull_reply"), std::string::npos) << m.payload.bytes();
    expect_rejected(s.server(), ++rejected);
  }

  // None of it counted: the well-behaved worker 1's step 0 completes the update.
  EXPECT_EQ(s.server().updates(), 0);
  Worker w1(model_specs(), worker_options(ctx, {ep}, 1));
  const auto g1 = gradients(0, 1);
  w1.wait(w1.push(g1, 0.25, 0));
  auto v1 = zeros_like_model();
  w0.wait(w0.pull(v0, 1));
  w1.wait(w1.pull(v1, 1));
  const auto expected = reference_run(sgd(0.1), {combine({gradients(0, 0), g1}, {0.75, 0.25})});
  EXPECT_TRUE(all_equal(v0, expected));
  EXPECT_TRUE(all_equal(v1, expected));
  w0.done();
  w1.done();
  EXPECT_TRUE(s.finished_within(3s));
  EXPECT_NO_THROW(s.get());
  EXPECT_EQ(s.server().rejected(), rejected);
  EXPECT_EQ(s.server().updates(), 2);
  EXPECT_EQ(s.server().steps_pushed(), std::vector<int64_t>({1, 1})) << "a refused push was counted";
}

TEST(PsServerOptions, RejectsBadValues) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerOptions no_workers = server_options(ctx, 0);
  EXPECT_THROW(Server{no_workers}, ConfigError);
  ServerOptions negative = server_options(ctx, 2, Consistency::ssp);
  negative.staleness = -1;
  EXPECT_THROW(Server{negative}, ConfigError);
}

}  // namespace
}  // namespace loom::ps
