// The StatusWriter against a fake API server and a fake clock: what it
// writes, in which order, and how each answer decides the retry.
#include "controller/k8s/status_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "controller/k8s/encode.h"
#include "controller/k8s/testing/fake_api.h"

namespace flowlb::controller::k8s {
namespace {

using testing::FakeApi;
using ::testing::HasSubstr;
using web::json::value;

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

std::string serviceJson(const std::string& name, const std::string& extra = "") {
  return R"({"metadata": {"name": ")" + name + R"(", "namespace": "default", "uid": "u-)" + name +
         R"(", "generation": 2}, "spec": {"type": "LoadBalancer",
            "loadBalancerClass": "flowlb.io/lb", "ports": [{"port": 80}]})" +
         extra + "}";
}

WantedStatus allocated(const char* address, const char* pool = "public") {
  ServiceOutcome o;
  o.ips = {ip(address)};
  o.pool = pool;
  o.satisfied = true;
  o.reason = "Allocated";
  o.message = std::string("assigned ") + address;
  return wantedFor(o, nullptr);
}

class Telemetry : public WriteTelemetry {
 public:
  void statusWrite(std::string_view r) override { ++results[std::string(r)]; }
  std::map<std::string, int> results;
};

class StatusWriterTest : public ::testing::Test {
 protected:
  void add(const std::string& name, const std::string& extra = "") {
    api.put(servicePath("default/" + name), serviceJson(name, extra));
    echo("default/" + name);
  }
  // The watch brings the server's version into the cache.
  void echo(const std::string& key) { cache[key] = api.service(key); }
  int drain() {
    int n = 0;
    while (queue.runOne()) ++n;
    return n;
  }
  value status(const std::string& key) { return api.get(servicePath(key))["status"]; }

  FakeApi api;
  FakeClock clock;
  WriteQueue queue{WriteQueueOptions{}, &clock};
  std::map<std::string, ServiceObject> cache;
  bool leader = true;
  Telemetry telemetry;
  StatusWriter writer{StatusWriterOptions{},
                      &api,
                      &queue,
                      [this](const std::string& key) -> std::optional<ServiceObject> {
                        auto it = cache.find(key);
                        if (it == cache.end()) return std::nullopt;
                        return it->second;
                      },
                      [](const std::string&) { return std::nullopt; },
                      [this] { return leader; },
                      &clock,
                      &telemetry};
};

TEST_F(StatusWriterTest, EveryAddressIsWrittenBeforeAnyAnnotation) {
  add("a");
  add("b");
  writer.want({{"default/a", allocated("192.0.2.1")}, {"default/b", allocated("192.0.2.2")}}, true);
  EXPECT_TRUE(writer.pending("default/a"));
  drain();
  const auto log = api.requests();
  ASSERT_EQ(log.size(), 4u);
  EXPECT_THAT(log[0].path, HasSubstr("/status"));
  EXPECT_THAT(log[1].path, HasSubstr("/status"));
  EXPECT_THAT(log[2].body, HasSubstr("ip-allocated-from-pool"));
  EXPECT_THAT(log[3].body, HasSubstr("ip-allocated-from-pool"));
  value st = status("default/a");
  EXPECT_EQ(st.at("loadBalancer").at("ingress")[0].at("ip").as_string(), "192.0.2.1");
  EXPECT_EQ(st.at("loadBalancer").at("ingress")[0].at("ipMode").as_string(), "VIP");
  EXPECT_EQ(st.at("conditions")[0].at("type").as_string(), kConditionAllocated);
  EXPECT_EQ(st.at("conditions")[0].at("observedGeneration").as_integer(), 2);
  EXPECT_EQ(api.get(servicePath("default/a"))["metadata"]["annotations"][kAnnotationAllocatedFrom]
                .as_string(),
            "public");
  EXPECT_FALSE(writer.pending("default/a"));
  // What the server holds is what we want: nothing more to write, also
  // before the watch brings it back (our writes' answers are remembered).
  api.clearLog();
  writer.want({{"default/a", allocated("192.0.2.1")}, {"default/b", allocated("192.0.2.2")}}, true);
  drain();
  EXPECT_TRUE(api.requests().empty());
  EXPECT_EQ(telemetry.results["ok"], 2);
}

TEST_F(StatusWriterTest, TheLatestWishIsWrittenOnceNotEveryWishInTurn) {
  add("a");
  writer.want({{"default/a", allocated("192.0.2.1")}}, true);
  ServiceOutcome conflict;  // decided again before the write went out
  conflict.ips = {ip("192.0.2.7")};
  conflict.satisfied = true;
  conflict.reason = "Allocated";
  conflict.message = "assigned 192.0.2.7";
  conflict.pool = "public";
  writer.want({{"default/a", wantedFor(conflict, nullptr)}}, true);
  drain();
  ASSERT_EQ(api.requests("PATCH", "/status").size(), 1u);
  EXPECT_EQ(status("default/a").at("conditions")[0].at("message").as_string(),
            "assigned 192.0.2.7");
}

TEST_F(StatusWriterTest, ConflictIsReadAgainAndRetriedAtOnce) {
  add("a");
  api.touch(servicePath("default/a"));  // someone else wrote; our cache is behind
  writer.want({{"default/a", allocated("192.0.2.1")}}, true);
  drain();
  const auto patches = api.requests("PATCH", "/status");
  ASSERT_EQ(patches.size(), 2u);  // 409, then the retry on the version read back
  EXPECT_EQ(api.requests("GET", "/services/a").size(), 1u);
  EXPECT_EQ(telemetry.results["conflict"], 1);
  EXPECT_EQ(status("default/a").at("loadBalancer").at("ingress")[0].at("ip").as_string(),
            "192.0.2.1");
}

TEST_F(StatusWriterTest, RetryableFailureWaitsForItsBackoffOnTheClock) {
  add("a");
  api.failNext(1, 503, "PATCH", "/status", 2.0);  // Retry-After: 2
  writer.want({{"default/a", allocated("192.0.2.1")}}, true);
  EXPECT_EQ(drain(), 1);
  EXPECT_TRUE(writer.pending("default/a"));
  ASSERT_TRUE(queue.nextDue());
  EXPECT_GE(*queue.nextDue() - clock.now(), std::chrono::seconds(2));
  clock.advance(std::chrono::seconds(1));
  EXPECT_EQ(drain(), 0) << "not before its time";
  clock.advance(std::chrono::seconds(2));
  drain();
  EXPECT_EQ(api.requests("PATCH", "/status").size(), 2u);
  EXPECT_FALSE(writer.pending("default/a"));
  EXPECT_EQ(telemetry.results["failed"], 1);
}

TEST_F(StatusWriterTest, PermanentFailureAndDeletionAreNotRetried) {
  add("a");
  add("b");
  api.failNext(1, 422, "PATCH", "/services/a/status");
  api.remove(servicePath("default/b"));  // deleted; the cache has not heard yet
  writer.want({{"default/a", allocated("192.0.2.1")}, {"default/b", allocated("192.0.2.2")}}, true);
  drain();
  clock.advance(std::chrono::minutes(5));
  drain();
  EXPECT_EQ(api.requests("PATCH", "/services/a/status").size(), 1u);
  EXPECT_EQ(api.requests("PATCH", "/services/b/status").size(), 1u);
  EXPECT_EQ(queue.size(), 0u);
}

TEST_F(StatusWriterTest, OnlyTheLeaderWritesAndANewLeaderWritesWhatDiffers) {
  add("a");
  add("b");
  leader = false;
  writer.want({{"default/a", allocated("192.0.2.1")}}, true);
  drain();
  EXPECT_TRUE(api.requests().empty());
  // Leader: a write is queued, then leadership is lost before it runs.
  leader = true;
  writer.want({{"default/a", allocated("192.0.2.1")}, {"default/b", allocated("192.0.2.2")}}, true);
  leader = false;
  writer.dropQueued();
  drain();
  EXPECT_TRUE(api.requests().empty());
  // Leader again: it writes everything that differs from the server.
  leader = true;
  api.put(servicePath("default/b"), serviceJson("b", R"(, "status": {"loadBalancer":
      {"ingress": [{"ip": "192.0.2.2", "ipMode": "VIP"}]}, "conditions": [{"type":
      "flowlb.io/AddressAllocated", "status": "True", "reason": "Allocated",
      "message": "assigned 192.0.2.2", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})"));
  echo("default/b");
  writer.want({{"default/a", allocated("192.0.2.1")}, {"default/b", allocated("192.0.2.2")}}, true);
  drain();
  EXPECT_EQ(api.requests("PATCH", "/services/a/status").size(), 1u);
  EXPECT_TRUE(api.requests("PATCH", "/services/b/status").empty());
  // b's condition kept its transition time (its status did not change).
  EXPECT_EQ(status("default/b").at("conditions")[0].at("lastTransitionTime").as_string(),
            "2026-01-01T00:00:00Z");
}

// Issue 17.11: the API server lost its state (etcd restored from a backup,
// resourceVersions went back). The remembered answer of our last write had
// a higher version than anything the server now holds and would have won
// over it forever.
TEST_F(StatusWriterTest, AfterAReListAnOlderWriteCannotWinOverWhatTheServerHolds) {
  add("a");
  writer.want({{"default/a", allocated("192.0.2.1")}}, true);
  drain();
  ASSERT_EQ(writer.current("default/a")->status.ips, std::vector<IpAddr>{ip("192.0.2.1")});
  // Restored: the Service as it was before our write, at a lower version.
  api.putAt(servicePath("default/a"), serviceJson("a"), 50);
  echo("default/a");
  writer.forgetWrites();  // what the informer's re-list does
  EXPECT_TRUE(writer.current("default/a")->status.ips.empty())
      << "the server's state, not our remembered write";
  api.clearLog();
  writer.want({{"default/a", allocated("192.0.2.1")}}, true);
  drain();
  EXPECT_EQ(api.requests("PATCH", "/status").size(), 1u) << "the lost write is made again";
}

// Issue 17.12: a Service that stopped being ours kept our address and
// annotation in its status.
TEST_F(StatusWriterTest, ServiceThatLeftUsLosesOurEntriesAndKeepsEveryoneElses) {
  // Its type changed to ClusterIP; the status still shows what we wrote,
  // next to another controller's entries.
  api.put(servicePath("default/a"), R"({
      "metadata": {"name": "a", "namespace": "default",
                   "annotations": {"flowlb.io/ip-allocated-from-pool": "public", "team": "x"}},
      "spec": {"type": "ClusterIP", "ports": [{"port": 80}]},
      "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"},
                                              {"hostname": "lb.other.example"}]},
                 "conditions": [{"type": "flowlb.io/AddressAllocated", "status": "True",
                                 "reason": "Allocated", "message": "assigned 192.0.2.1"},
                                {"type": "other.example/Ready", "status": "True",
                                 "reason": "Ready", "message": ""}]}})");
  echo("default/a");
  writer.want({{"default/a", wantedForLeaving({"default/a", {ip("192.0.2.1")}})}}, true);
  drain();
  value st = status("default/a");
  ASSERT_EQ(st.at("loadBalancer").at("ingress").size(), 1u);
  EXPECT_EQ(st.at("loadBalancer").at("ingress")[0].at("hostname").as_string(), "lb.other.example");
  ASSERT_EQ(st.at("conditions").size(), 1u);
  EXPECT_EQ(st.at("conditions")[0].at("type").as_string(), "other.example/Ready");
  const value annotations = api.get(servicePath("default/a"))["metadata"]["annotations"];
  EXPECT_FALSE(annotations.has_field(kAnnotationAllocatedFrom));
  EXPECT_EQ(annotations.at("team").as_string(), "x");
}

// Issue 17.13: a name "q?x=1" made the controller PATCH /services/q with
// the query "x=1/status".
TEST_F(StatusWriterTest, NamesAreEncodedInRequestPaths) {
  add("q?x=1");
  writer.want({{"default/q?x=1", allocated("192.0.2.1")}}, true);
  drain();
  const auto patches = api.requests("PATCH", "/status");
  ASSERT_EQ(patches.size(), 1u);
  EXPECT_EQ(patches[0].path, "/api/v1/namespaces/default/services/q%3Fx%3D1/status");
  EXPECT_EQ(status("default/q?x=1").at("loadBalancer").at("ingress")[0].at("ip").as_string(),
            "192.0.2.1");
}

TEST_F(StatusWriterTest, AStatusWriteToComeIsWhatTheReconcilerSees) {
  add("a");
  writer.want({{"default/a", allocated("192.0.2.1")}}, true);
  const auto cached = std::make_shared<const ServiceObject>(cache["default/a"]);
  ServicePtr seen = cached;
  writer.overlay(&seen);
  EXPECT_EQ(seen->status.ips, std::vector<IpAddr>{ip("192.0.2.1")});
  EXPECT_TRUE(cached->status.ips.empty()) << "the shared object itself is never changed";
}

}  // namespace
}  // namespace flowlb::controller::k8s
