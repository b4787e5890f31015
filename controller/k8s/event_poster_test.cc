// Events, end to end through the recorder (deduplication) and the poster
// (create, count up, recreate when expired), against the fake API.
#include "controller/k8s/event_poster.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "controller/k8s/testing/fake_api.h"

namespace flowlb::controller::k8s {
namespace {

using testing::FakeApi;
using ::testing::HasSubstr;

class EventsTest : public ::testing::Test {
 protected:
  int drain() {
    int n = 0;
    while (queue.runOne()) ++n;
    return n;
  }
  FakeApi api;
  FakeClock clock;
  WriteQueue queue{WriteQueueOptions{}, &clock};
  bool leader = true;
  EventPoster poster{&api, &queue, "ctl-a", [this] { return leader; }, &clock};
  EventRecorder recorder{&poster};
  void SetUp() override { poster.setRecorder(&recorder); }
};

const ServiceEvent kExhausted{true, "PoolExhausted", "no free IPv4 address in public"};
const ServiceEvent kAllocated{false, "IPAllocated", "assigned 192.0.2.1"};

TEST_F(EventsTest, AFactIsPostedWhenItAppearsNotWhileItLasts) {
  for (int i = 0; i < 5; ++i) {
    recorder.observe("shop/web", "u-1", "reconcile", {kExhausted});
    drain();
  }
  const auto posts = api.requests("POST", "/namespaces/shop/events");
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_THAT(posts[0].body, HasSubstr("\"reason\":\"PoolExhausted\""));
  EXPECT_THAT(posts[0].body, HasSubstr("\"uid\":\"u-1\""));
  EXPECT_THAT(posts[0].body, HasSubstr("\"type\":\"Warning\""));
  EXPECT_THAT(posts[0].body, HasSubstr("\"reportingInstance\":\"ctl-a\""));
  // It goes away, then comes back: the same Event is counted up.
  recorder.observe("shop/web", "u-1", "reconcile", {kAllocated});
  drain();
  recorder.observe("shop/web", "u-1", "reconcile", {kExhausted});
  drain();
  EXPECT_EQ(api.requests("POST", "/events").size(), 2u);  // + IPAllocated
  const auto bumps = api.requests("PATCH", "/namespaces/shop/events/ev-1");
  ASSERT_EQ(bumps.size(), 1u);
  EXPECT_THAT(bumps[0].body, HasSubstr("\"count\":2"));
}

TEST_F(EventsTest, OriginsAreIndependentAndForgottenServicesStartOver) {
  recorder.observe("shop/web", "u-1", "reconcile", {kExhausted});
  recorder.observe("shop/web", "u-1", "agents", {kExhausted});
  drain();
  EXPECT_EQ(api.requests("POST", "/events").size(), 2u);
  recorder.observe("shop/web", "u-1", "reconcile", {kExhausted});  // still holds
  drain();
  EXPECT_EQ(api.requests("POST", "/events").size(), 2u);
  recorder.retain({});  // deleted
  EXPECT_EQ(recorder.size(), 0u);
  recorder.observe("shop/web", "u-2", "reconcile", {kExhausted});  // re-created
  drain();
  EXPECT_EQ(api.requests("POST", "/events").size(), 3u);
}

TEST_F(EventsTest, AnExpiredEventIsCreatedAgainAndFollowersPostNothing) {
  recorder.observe("shop/web", "u-1", "reconcile", {kExhausted});
  drain();
  recorder.observe("shop/web", "u-1", "reconcile", {});
  api.remove("/api/v1/namespaces/shop/events/ev-1");  // Events live an hour
  recorder.observe("shop/web", "u-1", "reconcile", {kExhausted});
  drain();
  EXPECT_EQ(api.requests("PATCH", "/events/ev-1").size(), 1u);
  EXPECT_EQ(api.requests("POST", "/events").size(), 2u);
  // A follower posts nothing, and the fact is not forgotten: once leader,
  // it is posted at the next observation.
  leader = false;
  recorder.observe("shop/db", "u-3", "reconcile", {kExhausted});
  drain();
  EXPECT_EQ(api.requests("POST", "/events").size(), 2u);
  leader = true;
  recorder.observe("shop/db", "u-3", "reconcile", {kExhausted});
  drain();
  EXPECT_EQ(api.requests("POST", "/namespaces/shop/events").size(), 3u);
}

}  // namespace
}  // namespace flowlb::controller::k8s
