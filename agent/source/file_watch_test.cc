#include "agent/source/file_watch.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace flowlb::agent {
namespace {

using namespace std::chrono_literals;
using Clock = FileWatch::Clock;

class FileWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/flowlb-watch-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/agent.yaml";
    std::ofstream(path_) << "generation: 1\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_, path_;
};

// Issue 17.8: a file rewritten in place is only reported once it has been
// closed and then stayed the same for the settle period.
TEST_F(FileWatchTest, AFileRewrittenInPlaceIsReportedOnlyWhenCompleteAndSettled) {
  auto w = FileWatch::open(path_, 100ms);
  ASSERT_TRUE(w.isOk());
  ASSERT_GE(w->fd(), 0);
  const Clock::time_point t0 = Clock::now();
  EXPECT_FALSE(w->ready(t0));

  FILE* f = std::fopen(path_.c_str(), "w");  // truncated, in place
  ASSERT_NE(f, nullptr);
  std::fputs("generation: 2\nservices:\n", f);
  std::fflush(f);
  EXPECT_FALSE(w->ready(t0 + 1s));  // half-written: no close yet
  EXPECT_FALSE(w->ready(t0 + 2s));
  std::fputs("  - name: web\n", f);
  std::fclose(f);
  EXPECT_FALSE(w->ready(t0 + 2s + 10ms));  // closed, not settled
  EXPECT_TRUE(w->pending());
  EXPECT_TRUE(w->ready(t0 + 2s + 150ms));
  EXPECT_FALSE(w->ready(t0 + 3s));  // reported once
}

TEST_F(FileWatchTest, AFileRenamedIntoPlaceIsReported) {
  auto w = FileWatch::open(path_, 50ms);
  ASSERT_TRUE(w.isOk());
  const std::string tmp = dir_ + "/agent.yaml.new";
  std::ofstream(tmp) << "generation: 3\nservices: []\n";
  std::filesystem::rename(tmp, path_);
  const Clock::time_point t0 = Clock::now();
  EXPECT_FALSE(w->ready(t0));
  EXPECT_TRUE(w->ready(t0 + 60ms));
}

TEST_F(FileWatchTest, OtherFilesInTheDirectoryAreIgnoredAndTouchForcesAReload) {
  auto w = FileWatch::open(path_, 50ms);
  ASSERT_TRUE(w.isOk());
  std::ofstream(dir_ + "/other.yaml") << "x: 1\n";
  const Clock::time_point t0 = Clock::now();
  EXPECT_FALSE(w->ready(t0 + 1s));
  w->touch(t0 + 1s);  // SIGHUP
  EXPECT_FALSE(w->ready(t0 + 1s + 10ms));
  EXPECT_TRUE(w->ready(t0 + 1s + 60ms));
}

}  // namespace
}  // namespace flowlb::agent
