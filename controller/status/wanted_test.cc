#include "controller/status/wanted.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flowlb::controller {
namespace {

using ::testing::HasSubstr;

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

ServiceOutcome outcome() {
  ServiceOutcome o;
  o.key = "shop/web";
  o.ips = {ip("192.0.2.1")};
  o.pool = "public";
  o.satisfied = true;
  o.reason = "Allocated";
  o.message = "assigned 192.0.2.1";
  return o;
}

const Condition* find(const std::vector<Condition>& all, const char* type) {
  for (const Condition& c : all) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

TEST(WantedTest, ConditionsFromTheOutcomeAndWhatTheAgentsSay) {
  WantedStatus w = wantedFor(outcome(), nullptr);
  ASSERT_EQ(w.conditions.size(), 1u);
  EXPECT_EQ(w.pool, "public");
  // Unknown feedback leaves those conditions as they are.
  EXPECT_EQ(w.keep, (std::vector<std::string>{kConditionProgrammed, kConditionAnnounced}));

  ServiceFeedback f;
  f.programmed_known = true;
  f.nodes = 3;
  f.failed = {{"node-b", "UNSUPPORTED", "no IPv6 source address"}};
  f.announcers_known = true;
  f.announcers = {{ip("192.0.2.1"), "node-a"}, {ip("2001:db8::1"), ""}};
  w = wantedFor(outcome(), &f);
  EXPECT_TRUE(w.keep.empty());
  const Condition* p = find(w.conditions, kConditionProgrammed);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->status, "False");
  EXPECT_EQ(p->message,
            "applied on 2 of 3 nodes; not on node-b: UNSUPPORTED: no IPv6 source address");
  const Condition* a = find(w.conditions, kConditionAnnounced);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->status, "False");
  EXPECT_THAT(a->message, HasSubstr("2001:db8::1 announced by no node"));
  EXPECT_THAT(a->message, HasSubstr("192.0.2.1 announced by node node-a"));

  f.failed.clear();
  f.nodes = 4;  // an agent came: nothing to rewrite when all is well
  f.announcers = {{ip("192.0.2.1"), "node-a"}};
  const WantedStatus ok = wantedFor(outcome(), &f);
  f.nodes = 5;
  EXPECT_EQ(wantedFor(outcome(), &f), ok);
  EXPECT_EQ(find(ok.conditions, kConditionProgrammed)->status, "True");
  EXPECT_EQ(find(ok.conditions, kConditionAnnounced)->message,
            "192.0.2.1 announced by node node-a");
}

TEST(WantedTest, StatusSaysComparesOursAndKeepsEveryoneElses) {
  const WantedStatus w = wantedFor(outcome(), nullptr);
  ServiceObject s;
  s.status.ips = {ip("192.0.2.1")};
  s.status.conditions = {{"other/Ready", "True", "R", "", "t0", 0},
                         {kConditionAnnounced, "True", "Announced", "by node-a", "t1", 0}};
  EXPECT_FALSE(statusSays(s, w));
  StatusUpdate u = statusAfter(s, w, "t2");
  ASSERT_EQ(u.conditions.size(), 3u);  // other's, our unknown-yet Announced kept, Allocated
  EXPECT_EQ(u.conditions[0].type, "other/Ready");
  EXPECT_EQ(u.conditions[1].type, kConditionAnnounced);
  EXPECT_EQ(u.conditions[2].last_transition, "t2");
  s.status.conditions = u.conditions;
  EXPECT_TRUE(statusSays(s, w));
  // The same status later keeps its transition time.
  EXPECT_EQ(statusAfter(s, w, "t9").conditions[2].last_transition, "t2");

  // Leaving: our address and conditions go, the rest stays.
  const WantedStatus leave = wantedForLeaving({"shop/web", {ip("192.0.2.1")}});
  EXPECT_FALSE(statusSays(s, leave));
  s.status.hostnames = {"x.example"};
  u = statusAfter(s, leave, "t3");
  EXPECT_TRUE(u.ips.empty());
  EXPECT_EQ(u.hostnames, std::vector<std::string>{"x.example"});
  ASSERT_EQ(u.conditions.size(), 1u);
  EXPECT_EQ(u.conditions[0].type, "other/Ready");
}

}  // namespace
}  // namespace flowlb::controller
