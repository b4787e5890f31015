// BGPPeer status and Events from the agents' session reports, end to end
// through the BgpPeerReporter, the BgpStatusWriter and the EventPoster,
// against the fake API and a fake clock.
#include "controller/k8s/bgp_status_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "controller/k8s/event_poster.h"
#include "controller/k8s/testing/fake_api.h"

namespace flowlb::controller::k8s {
namespace {

using testing::FakeApi;
using ::testing::HasSubstr;

constexpr const char* kPeerPath = "/apis/flowlb.io/v1alpha1/bgppeers/tor";

BgpNodeSession session(const std::string& node, const std::string& state, uint64_t since_ms,
                       uint64_t established = 1) {
  BgpNodeSession s;
  s.node = node;
  s.peer = "tor";
  s.state = state;
  s.since_unix_ms = since_ms;
  s.routes_advertised = state == "Established" ? 2 : 0;
  s.established_count = established;
  s.bfd = "Up";
  if (state != "Established") s.last_error = "hold timer expired";
  return s;
}

class BgpStatusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    api.put(kPeerPath, R"({"apiVersion":"flowlb.io/v1alpha1","kind":"BGPPeer",
      "metadata":{"name":"tor","uid":"u-tor","resourceVersion":"5"},"spec":{"peerASN":65000}})");
    poster.setRecorder(&recorder);
  }
  int drain() {
    int n = 0;
    while (queue.runOne()) ++n;
    return n;
  }
  uint64_t nowMs() const {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(clock.wallNow().time_since_epoch())
            .count());
  }
  std::vector<std::string> events(const std::string& reason) {
    std::vector<std::string> out;
    for (const auto& r : api.requests("POST", "/namespaces/default/events")) {
      if (r.body.find("\"reason\":\"" + reason + "\"") != std::string::npos) out.push_back(r.body);
    }
    return out;
  }
  FakeApi api;
  FakeClock clock;
  WriteQueue queue{WriteQueueOptions{}, &clock};
  bool leader = true;
  EventPoster poster{&api, &queue, "ctl-a", [this] { return leader; }, &clock};
  EventRecorder recorder{&poster};
  BgpStatusWriter writer{&api, &queue, [this] { return leader; }};
  BgpPeerReporter reporter{&recorder, &writer,
                           [](const std::string& p) { return p == "tor" ? "u-tor" : ""; }, &clock};
};

TEST_F(BgpStatusTest, EachNodesSessionIsShownOnThePeerAndWrittenOnlyWhenItChanges) {
  const uint64_t t = nowMs();
  reporter.update({{"tor", {session("lb1", "Established", t), session("lb2", "Established", t)}}});
  drain();
  web::json::value st = api.get(kPeerPath).at("status");
  EXPECT_EQ(st.at("establishedNodes").as_integer(), 2);
  ASSERT_EQ(st.at("nodes").size(), 2u);
  EXPECT_EQ(st.at("nodes")[0].at("name").as_string(), "lb1");
  EXPECT_EQ(st.at("nodes")[0].at("sessionState").as_string(), "Established");
  EXPECT_EQ(st.at("nodes")[0].at("routesAdvertised").as_integer(), 2);
  EXPECT_EQ(st.at("nodes")[0].at("bfdState").as_string(), "Up");
  EXPECT_FALSE(st.at("nodes")[0].has_field("lastError"));
  EXPECT_EQ(api.requests("PATCH", "/bgppeers/tor/status").size(), 1u);

  // The same again (the 10 s refresh): nothing written, no Event.
  reporter.update({{"tor", {session("lb1", "Established", t), session("lb2", "Established", t)}}});
  drain();
  EXPECT_EQ(api.requests("PATCH", "/bgppeers/tor/status").size(), 1u);
  EXPECT_EQ(events("SessionEstablished").size(), 2u) << "one Normal Event per node";
  EXPECT_THAT(events("SessionEstablished")[0], HasSubstr(R"("kind":"BGPPeer")"));
  EXPECT_THAT(events("SessionEstablished")[0], HasSubstr(R"("uid":"u-tor")"));
  EXPECT_THAT(events("SessionEstablished")[0], HasSubstr(R"("apiVersion":"flowlb.io/v1alpha1")"));
}

TEST_F(BgpStatusTest, ASessionThatGoesDownIsAWarningEventOnceAndItsErrorIsInTheStatus) {
  const uint64_t t = nowMs();
  reporter.update({{"tor", {session("lb1", "Established", t), session("lb2", "Established", t)}}});
  drain();
  clock.advance(std::chrono::seconds(5));
  for (int i = 0; i < 4; ++i) {  // down, and still down at the next refreshes, cycling
    BgpNodeSession s = session("lb2", i % 2 ? "Idle" : "Connect", nowMs());
    s.bfd = i % 2 ? "Down" : "Init";
    s.last_error = i % 2 ? "connect: Connection refused" : "hold timer expired";
    reporter.update({{"tor", {session("lb1", "Established", t), s}}});
    drain();
    clock.advance(std::chrono::seconds(5));
  }
  const auto down = events("SessionDown");
  ASSERT_EQ(down.size(), 1u);
  EXPECT_THAT(down[0], HasSubstr(R"("type":"Warning")"));
  EXPECT_THAT(down[0], HasSubstr("node lb2: session down;"));
  web::json::value st = api.get(kPeerPath).at("status");
  EXPECT_EQ(st.at("establishedNodes").as_integer(), 1);
  EXPECT_EQ(st.at("nodes")[1].at("lastError").as_string(), "connect: Connection refused");
  EXPECT_EQ(api.requests("PATCH", "/namespaces/default/events/").size(), 0u)
      << "the state cycling while the router is away is one outage: no count-ups";

  // Back up: the Normal Event for lb2 is counted up, not posted again.
  reporter.update(
      {{"tor", {session("lb1", "Established", t), session("lb2", "Established", nowMs())}}});
  drain();
  EXPECT_EQ(events("SessionEstablished").size(), 2u);
  EXPECT_EQ(api.requests("PATCH", "/namespaces/default/events/").size(), 1u) << "count 2";
}

TEST_F(BgpStatusTest, ASessionThatNeverCameUpIsDownOnlyAfterItsGrace) {
  reporter.update({{"tor", {session("lb1", "Connect", nowMs(), 0)}}});
  drain();
  EXPECT_TRUE(events("SessionDown").empty()) << "an agent's first connect takes a moment";
  // A wrong ASN: OpenSent, NOTIFICATION, Idle, Connect... every few seconds,
  // so the agent's since never gets old; the controller's first sight does.
  for (int i = 0; i < 6; ++i) {
    clock.advance(std::chrono::seconds(5));
    reporter.update({{"tor", {session("lb1", i % 2 ? "Idle" : "OpenSent", nowMs(), 0)}}});
    drain();
  }
  ASSERT_EQ(events("SessionDown").size(), 1u);
  EXPECT_THAT(events("SessionDown")[0], HasSubstr("node lb1: session not established"));
}

TEST_F(BgpStatusTest, APeerNoNodeReportsIsClearedAndADeletedPeerIsNotRetried) {
  const uint64_t t = nowMs();
  reporter.update({{"tor", {session("lb1", "Established", t)}}});
  drain();
  reporter.update({{"tor", {}}});
  drain();
  EXPECT_EQ(api.get(kPeerPath).at("status").at("nodes").size(), 0u);
  api.remove(kPeerPath);
  reporter.update({{"tor", {session("lb1", "Established", t)}}});
  drain();
  clock.advance(std::chrono::seconds(30));
  drain();
  EXPECT_EQ(api.requests("PATCH", "/bgppeers/tor/status").size(), 3u) << "a 404 is not retried";
}

TEST_F(BgpStatusTest, AFollowerWritesNothingAndANewLeaderWritesEverything) {
  const uint64_t t = nowMs();
  leader = false;
  reporter.update({{"tor", {session("lb1", "Established", t)}}});
  drain();
  EXPECT_TRUE(api.requests("PATCH", "/bgppeers/").empty());
  EXPECT_TRUE(events("SessionEstablished").empty());
  leader = true;
  reporter.resend();
  reporter.update({{"tor", {session("lb1", "Established", t)}}});
  drain();
  EXPECT_EQ(api.requests("PATCH", "/bgppeers/tor/status").size(), 1u);
  EXPECT_EQ(events("SessionEstablished").size(), 1u);
}

TEST_F(BgpStatusTest, APeerLeavingTheViewForgetsItsSessionsNotItsOtherWarnings) {
  // The reconcile says the peer's password cannot be read, and so the
  // peer leaves the view: its InvalidPassword must not be posted again.
  const ServiceEvent bad{true, "InvalidPassword", "spec.passwordSecretRef: no Secret s"};
  recorder.observe(bgpPeerEventKey("tor"), "u-tor", "spec", {bad});
  reporter.update({{"tor", {session("lb1", "Established", nowMs())}}});
  drain();
  reporter.update({});  // no node peers with it now
  recorder.observe(bgpPeerEventKey("tor"), "u-tor", "spec", {bad});
  drain();
  EXPECT_EQ(events("InvalidPassword").size(), 1u);
  EXPECT_TRUE(api.requests("PATCH", "/namespaces/default/events/").empty());
}

TEST(BgpPeerStatusTest, SessionsAreGroupedByPeerAndCountedPerState) {
  BgpNodeSession a{"lb2", "tor", "Established"}, b{"lb1", "tor", "Connect"},
      c{"lb1", "edge", "Established"};
  const BgpPeerSessions g = groupByPeer({a, b, c}, {"tor", "edge", "idle-peer"});
  ASSERT_EQ(g.at("tor").size(), 2u);
  EXPECT_EQ(g.at("tor")[0].node, "lb1");  // sorted by node
  EXPECT_TRUE(g.at("idle-peer").empty());
  const auto per = sessionsPerState(g);
  EXPECT_EQ(per.at("Established"), 2u);
  EXPECT_EQ(per.at("Connect"), 1u);
  EXPECT_EQ(per.at("Idle"), 0u);
}

}  // namespace
}  // namespace flowlb::controller::k8s
