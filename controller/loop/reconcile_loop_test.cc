// The reconcile loop with a fake source and sink: full passes, endpoint-only
// passes, our own status coming back, and waiting for a synced source.
#include "controller/loop/reconcile_loop.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

namespace flowlb::controller {
namespace {

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

class FakeSource : public ObjectSource {
 public:
  bool synced() const override { return synced_; }
  std::vector<ServicePtr> services() const override { return shareAll(services_); }
  std::optional<ServiceObject> service(const std::string& key) const override {
    for (const auto& s : services_) {
      if (s.meta.key() == key) return s;
    }
    return std::nullopt;
  }
  std::vector<SlicePtr> slices() const override { return shareAll(slices_); }
  std::vector<EndpointSliceObject> slicesOf(const std::string& key) const override {
    std::vector<EndpointSliceObject> out;
    for (const auto& e : slices_) {
      if (e.serviceKey() == key) out.push_back(e);
    }
    return out;
  }
  std::vector<NodeObject> nodes() const override { return {{"n1", true}}; }
  std::vector<IpPool> pools() const override {
    IpPool p;
    p.name = "p";
    p.ranges = {*AddressRange::parse("192.0.2.0/30")};
    return {p};
  }
  std::vector<BgpPeerSpec> bgpPeers() const override { return peers_; }
  std::optional<SecretObject> secret(const std::string& name) const override {
    for (const auto& s : secrets_) {
      if (s.meta.name == name) return s;
    }
    return std::nullopt;
  }
  bool synced_ = true;
  std::vector<BgpPeerSpec> peers_;
  std::vector<SecretObject> secrets_;
  std::vector<ServiceObject> services_;
  std::vector<EndpointSliceObject> slices_;
};

class FakeSink : public StatusSink {
 public:
  void overlay(ServicePtr*) const override {}
  bool pending(const std::string&) const override { return false; }
  void want(const std::map<std::string, WantedStatus>& w, bool complete) override {
    wants.push_back({w, complete});
  }
  std::vector<std::pair<std::map<std::string, WantedStatus>, bool>> wants;
};

class Counter : public LoopTelemetry {
 public:
  void reconciled(double, const Reconciled&, bool full) override { ++(full ? full_ : partial_); }
  int full_ = 0, partial_ = 0;
};

class Sink : public EventSink {
 public:
  bool post(const EventPost& e) override {
    posts.push_back(e);
    return true;
  }
  std::vector<EventPost> posts;
};

ServiceObject web() {
  ServiceObject s;
  s.meta.ns = "d";
  s.meta.name = "web";
  s.spec.type = "LoadBalancer";
  s.spec.load_balancer_class = "flowlb.io/lb";
  s.spec.ports = {{"http", 6, 80}};
  return s;
}

EndpointSliceObject slice(const char* addr) {
  EndpointSliceObject e;
  e.meta.ns = "d";
  e.meta.name = "web-1";
  e.service = "web";
  e.ports = {{"http", 6, 8080}};
  Endpoint ep;
  ep.addresses = {ip(addr)};
  ep.node = "n1";
  e.endpoints = {ep};
  return e;
}

class ReconcileLoopTest : public ::testing::Test {
 protected:
  FakeSource source;
  FakeSink sink;
  Counter counter;
  Sink event_sink;
  EventRecorder events{&event_sink};
  std::vector<Reconciled> published;
  ReconcileLoop loop{ReconcileLoopOptions{},
                     &source,
                     &sink,
                     &events,
                     [this](const Reconciled& r, uint64_t) { published.push_back(r); },
                     &counter};
};

TEST_F(ReconcileLoopTest, EndpointsAloneAreAnIncrementalPassOurEchoIsNothing) {
  source.services_ = {web()};
  source.slices_ = {slice("10.0.0.1")};
  EXPECT_TRUE(loop.runOnce());  // the first pass is full
  EXPECT_EQ(counter.full_, 1);
  ASSERT_EQ(sink.wants.size(), 1u);
  EXPECT_TRUE(sink.wants[0].second);
  const WantedStatus& w = sink.wants[0].first.at("d/web");
  EXPECT_EQ(w.ips, std::vector<IpAddr>{ip("192.0.2.0")});
  ASSERT_EQ(event_sink.posts.size(), 1u);
  EXPECT_EQ(event_sink.posts[0].reason, "IPAllocated");
  EXPECT_FALSE(loop.runOnce()) << "nothing pending";

  // An endpoint moves: only its Service's backends are rebuilt.
  source.slices_ = {slice("10.0.0.2")};
  loop.slicesChanged("d/web");
  EXPECT_TRUE(loop.runOnce());
  EXPECT_EQ(counter.full_, 1);
  EXPECT_EQ(counter.partial_, 1);
  ASSERT_EQ(published.size(), 2u);
  EXPECT_EQ(published[1].desired[0]->backends[0].addr, ip("10.0.0.2"));

  // Our status write comes back through the watch: not a full pass.
  source.services_[0].status.ips = w.ips;
  source.services_[0].meta.resource_version = "9";
  loop.serviceChanged("d/web");
  loop.runOnce();
  EXPECT_EQ(counter.full_, 1);
  // A user change to the spec is.
  source.services_[0].spec.ports[0].port = 81;
  loop.serviceChanged("d/web");
  loop.runOnce();
  EXPECT_EQ(counter.full_, 2);
  EXPECT_EQ(event_sink.posts.size(), 1u) << "IPAllocated is not news twice";
}

// An endpoint change that finds the loop idle is reconciled at once, not
// after the debounce (here ten minutes): its pass is incremental.
TEST(ReconcileLoopDebounceTest, AnEndpointChangeOnAnIdleLoopSkipsTheDebounce) {
  FakeSource source;
  FakeSink sink;
  Counter counter;
  FakeClock clock;
  source.services_ = {web()};
  source.slices_ = {slice("10.0.0.1")};
  std::mutex mu;
  std::condition_variable cv;
  int published = 0;
  ReconcileLoopOptions o;
  o.debounce = std::chrono::minutes(10);
  ReconcileLoop loop(
      o, &source, &sink, nullptr,
      [&](const Reconciled&, uint64_t) {
        std::lock_guard<std::mutex> lock(mu);
        ++published;
        cv.notify_all();
      },
      &counter, &clock);
  ASSERT_TRUE(loop.runOnce());  // the first, full pass
  clock.advance(std::chrono::minutes(11));
  source.slices_ = {slice("10.0.0.2")};
  loop.start();
  loop.slicesChanged("d/web");
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return published == 2; }))
      << "the endpoint change waited for the debounce";
  lock.unlock();
  loop.stop();
  EXPECT_EQ(counter.full_, 1);
  EXPECT_EQ(counter.partial_, 1);
}

TEST_F(ReconcileLoopTest, NothingIsDecidedFromAPartialView) {
  source.synced_ = false;
  source.services_ = {web()};
  EXPECT_FALSE(loop.runOnce());
  EXPECT_TRUE(published.empty());
  source.synced_ = true;
  loop.everythingChanged();
  EXPECT_TRUE(loop.runOnce());
  EXPECT_EQ(published.size(), 1u);
}

TEST_F(ReconcileLoopTest, FeedbackChangesConditionsWithoutAReconcile) {
  source.services_ = {web()};
  loop.runOnce();
  ServiceFeedback f;
  f.announcers_known = true;
  f.announcers = {{ip("192.0.2.0"), "n1"}};
  loop.feedback({{"d/web", f}});
  loop.runOnce();
  EXPECT_EQ(counter.full_ + counter.partial_, 1);
  ASSERT_EQ(sink.wants.size(), 2u);
  EXPECT_FALSE(sink.wants[1].second);
  const WantedStatus& w = sink.wants[1].first.at("d/web");
  ASSERT_EQ(w.conditions.size(), 2u);
  EXPECT_EQ(w.conditions[1].type, kConditionAnnounced);
  EXPECT_EQ(w.conditions[1].message, "192.0.2.0 announced by node n1");
}

// The health verdict's facts (controller/health/) become Events on the
// Service once each: down, back, down again (counted up).
TEST_F(ReconcileLoopTest, HealthFactsBecomeEventsOnce) {
  source.services_ = {web()};
  source.slices_ = {slice("10.0.0.1")};
  loop.runOnce();
  const size_t before = event_sink.posts.size();
  const ServiceEvent down{true, "BackendUnhealthy",
                          "backend 10.0.0.1:8080 failed its health check on 2 of 3 probing "
                          "nodes (n1: connect: Connection refused)"};
  const ServiceEvent back{false, "BackendHealthy",
                          "backend 10.0.0.1:8080 passed its health check again on 3 of 3 "
                          "probing nodes"};
  ServiceFeedback f;
  f.health = {down};
  loop.feedback({{"d/web", f}});
  loop.runOnce();
  ASSERT_EQ(event_sink.posts.size(), before + 1);
  EXPECT_EQ(event_sink.posts.back().reason, "BackendUnhealthy");
  EXPECT_TRUE(event_sink.posts.back().warning);
  // The same fact again (another feedback change): no new Event.
  f.announcers_known = true;
  loop.feedback({{"d/web", f}});
  loop.runOnce();
  EXPECT_EQ(event_sink.posts.size(), before + 1);
  f.health = {back};
  loop.feedback({{"d/web", f}});
  loop.runOnce();
  ASSERT_EQ(event_sink.posts.size(), before + 2);
  EXPECT_EQ(event_sink.posts.back().reason, "BackendHealthy");
  EXPECT_FALSE(event_sink.posts.back().warning);
  f.health = {down};
  loop.feedback({{"d/web", f}});
  loop.runOnce();
  ASSERT_EQ(event_sink.posts.size(), before + 3);
  EXPECT_EQ(event_sink.posts.back().count, 2) << "the same fact again is counted up";
}

TEST_F(ReconcileLoopTest, APeerGetsItsPasswordFromItsSecretOrIsLeftOutWithAWarning) {
  BgpPeerSpec p;
  p.name = "tor";
  p.uid = "u-tor";
  p.address = ip("10.0.0.1");
  p.peer_asn = 65000;
  p.local_asn = 65001;
  p.password_secret = SecretKeyRef{"tor-md5", "password"};
  source.peers_ = {p};
  auto peersSent = [this]() -> std::vector<BgpPeerSpec> {
    if (published.empty() || !published.back().bgp) return {};
    const auto* v = published.back().bgp->peersOf("n1");
    return v ? *v : std::vector<BgpPeerSpec>{};
  };
  auto warnings = [this] {
    int n = 0;
    for (const EventPost& e : event_sink.posts) {
      n += e.service_key == "BGPPeer/tor" && e.reason == "InvalidPassword" && e.uid == "u-tor";
    }
    return n;
  };
  // No Secret yet: the peer is not sent, and the BGPPeer says why.
  loop.everythingChanged();
  ASSERT_TRUE(loop.runOnce());
  EXPECT_TRUE(peersSent().empty());
  EXPECT_EQ(warnings(), 1);
  loop.everythingChanged();
  ASSERT_TRUE(loop.runOnce());
  EXPECT_EQ(warnings(), 1) << "said once while it lasts";
  // A Secret without the key, then one whose password is too long.
  SecretObject s;
  s.meta.name = "tor-md5";
  s.type = "kubernetes.io/basic-auth";
  s.data = {{"username", "x"}};
  source.secrets_ = {s};
  loop.everythingChanged();
  ASSERT_TRUE(loop.runOnce());
  EXPECT_TRUE(peersSent().empty());
  EXPECT_EQ(warnings(), 2) << "a different reason is a new Event";
  source.secrets_[0].data["password"] = std::string(81, 'x');
  loop.everythingChanged();
  ASSERT_TRUE(loop.runOnce());
  EXPECT_TRUE(peersSent().empty());
  // The right one: sent with its password.
  source.secrets_[0].data["password"] = "s3cret";
  loop.everythingChanged();
  ASSERT_TRUE(loop.runOnce());
  ASSERT_EQ(peersSent().size(), 1u);
  EXPECT_EQ(peersSent()[0].password, "s3cret");
}

}  // namespace
}  // namespace flowlb::controller
