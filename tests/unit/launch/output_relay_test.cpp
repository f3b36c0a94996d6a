#include "loom/launch/output_relay.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

namespace loom::launch {
namespace {

struct Pipe {
  UniqueFd read, write;
  Pipe() {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    read.reset(fds[0]);
    write.reset(fds[1]);
  }
};

// An in-memory file to use as a destination.
struct Sink {
  UniqueFd fd{memfd_create("relay-test", MFD_CLOEXEC)};
  std::string contents() const {
    std::string out;
    char buffer[4096];
    ssize_t n;
    off_t offset = 0;
    while ((n = pread(fd.get(), buffer, sizeof buffer, offset)) > 0) {
      out.append(buffer, n);
      offset += n;
    }
    return out;
  }
};

void put(const Pipe& p, const std::string& s) {
  ASSERT_EQ(write(p.write.get(), s.data(), s.size()), static_cast<ssize_t>(s.size()));
}

TEST(OutputRelay, RelaysCompleteLinesAndFlushesThePartialOneAtEndOfStream) {
  Pipe pipe;
  Sink sink;
  OutputRelay relay(std::move(pipe.read), sink.fd.get(), "[1]: ");
  put(pipe, "one\ntw");
  EXPECT_TRUE(relay.pump());
  EXPECT_EQ(sink.contents(), "[1]: one\n");
  EXPECT_TRUE(relay.pump());  // nothing to read: does not block, stays open
  put(pipe, "o\nthree");
  pipe.write.reset();  // end of stream
  relay.drain();
  EXPECT_FALSE(relay.open());
  EXPECT_EQ(relay.fd(), -1);
  EXPECT_EQ(sink.contents(), "[1]: one\n[1]: two\n[1]: three\n");
}

TEST(OutputRelay, CloseFlushesAndIsIdempotent) {
  Pipe pipe;
  Sink sink;
  OutputRelay relay(std::move(pipe.read), sink.fd.get(), "> ");
  put(pipe, "partial");
  relay.drain();
  EXPECT_TRUE(relay.open());  // the writer still holds the pipe
  relay.close();
  relay.close();
  EXPECT_EQ(sink.contents(), "> partial\n");
}

TEST(OutputRelay, KeepsConsumingWhenTheDestinationIsGone) {
  struct sigaction ignore {
  }, previous{};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, &previous);
  Pipe source;
  Pipe destination;
  destination.read.reset();  // a reader that went away, like `| head`
  OutputRelay relay(std::move(source.read), destination.write.get(), "");
  for (int i = 0; i < 100; ++i) {
    put(source, std::string(1000, 'x') + "\n");
    relay.drain();
  }
  source.write.reset();
  relay.drain();
  EXPECT_FALSE(relay.open());
  sigaction(SIGPIPE, &previous, nullptr);
}

TEST(WriteAll, WritesLargeBuffersCompletely) {
  Sink sink;
  const std::string big(1 << 20, 'y');
  EXPECT_TRUE(write_all(sink.fd.get(), big));
  EXPECT_EQ(sink.contents().size(), big.size());
}

}  // namespace
}  // namespace loom::launch
