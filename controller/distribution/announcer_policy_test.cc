// The announcer policy, table by table: no gRPC, no sleeps.
#include "controller/distribution/announcer_policy.h"

#include <gtest/gtest.h>

namespace flowlb::controller {
namespace {

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

const std::vector<std::string> kAll = {"a", "b", "c"};

std::set<std::string> without_set(const std::vector<std::string>& v) {
  return {v.begin(), v.end()};
}

struct Case {
  const char* what;
  std::vector<std::string> candidates;
  std::set<std::string> live;
  std::string previous;  // "" none
  bool settling;
  std::string want;  // "rv:<set>" = rendezvous over that set
};

TEST(AnnouncerPolicyTest, StickyThenRendezvousOverLiveThenNominal) {
  const IpAddr vip = ip("192.0.2.10");
  const std::string rv_all = rendezvous(vip, kAll);
  const std::string other = rv_all == "a" ? "b" : "a";
  std::vector<std::string> without = kAll;
  without.erase(std::find(without.begin(), without.end(), rv_all));
  const std::string rv_rest = rendezvous(vip, without);
  const std::vector<Case> cases = {
      {"new VIP, all live: rendezvous", kAll, {"a", "b", "c"}, "", false, rv_all},
      {"keeps its announcer while live", kAll, {"a", "b", "c"}, other, false, other},
      {"its agent went: rendezvous over the rest", kAll, {"a", "b", "c"}, "gone", false, rv_all},
      {"announcer not live: moves", kAll, without_set(without), rv_all, false, rv_rest},
      {"announcer no longer a candidate: moves", without, {"a", "b", "c"}, rv_all, false, rv_rest},
      {"settling: stays with an agent not back yet", kAll, {}, other, true, other},
      {"settling, not a candidate any more: moves",
       without,
       {},
       rv_all,
       true,
       rendezvous(vip, without)},
      {"nobody live: the nominal choice", kAll, {}, "", false, rv_all},
      {"no candidate at all", {}, {"a"}, "a", false, ""},
      {"one live candidate takes it", kAll, {"c"}, "", false, "c"},
  };
  for (const Case& c : cases) {
    AnnouncerMap prev;
    if (!c.previous.empty()) prev[vip] = c.previous;
    const AnnouncerMap got =
        assignAnnouncers({VipCandidates::of(vip, c.candidates)}, c.live, prev, c.settling);
    EXPECT_EQ(got.at(vip), c.want) << c.what;
  }
}

// A test killed an agent 0.5 s after the controller started: its VIP stayed
// on the dead node until the 3 s settling ended (1.55 s without service).
// Settling waits for agents that are not back yet, not for one that came
// back and went again.
TEST(AnnouncerPolicyTest, SettlingDoesNotWaitForAnAgentThatCameBackAndWentAgain) {
  const IpAddr vip = ip("192.0.2.10");
  const std::string rv_all = rendezvous(vip, kAll);
  std::vector<std::string> rest = kAll;
  rest.erase(std::find(rest.begin(), rest.end(), rv_all));
  const std::set<std::string> live(rest.begin(), rest.end());
  const AnnouncerMap prev = {{vip, rv_all}};
  const auto pick = [&](const std::set<std::string>& lost) {
    return assignAnnouncers({VipCandidates::of(vip, kAll)}, live, prev, true, lost).at(vip);
  };
  EXPECT_EQ(pick({}), rv_all) << "not back yet: waited for";
  EXPECT_EQ(pick({rv_all}), rendezvous(vip, rest)) << "back and gone again: moves at once";
}

TEST(AnnouncerPolicyTest, VipsSpreadAndALossMovesOnlyItsOwn) {
  std::vector<VipCandidates> vips;
  for (int i = 1; i <= 60; ++i) {
    vips.push_back(VipCandidates::of(*IpAddr::parse("192.0.2." + std::to_string(i)), kAll));
  }
  const std::set<std::string> live = {"a", "b", "c"};
  const AnnouncerMap first = assignAnnouncers(vips, live, {}, false);
  std::map<std::string, int> per;
  for (const auto& [vip, n] : first) ++per[n];
  EXPECT_EQ(per.size(), 3u);
  for (const auto& [n, count] : per) EXPECT_GT(count, 10) << n;
  // b goes: only b's VIPs move; b comes back: nothing moves (sticky).
  const AnnouncerMap without_b = assignAnnouncers(vips, {"a", "c"}, first, false);
  for (const auto& [vip, n] : first) {
    if (n != "b") {
      EXPECT_EQ(without_b.at(vip), n);
    }
    EXPECT_NE(without_b.at(vip), "b");
  }
  EXPECT_EQ(assignAnnouncers(vips, live, without_b, false), without_b);
  // The same inputs, the same answer, whatever the order of the VIPs.
  std::vector<VipCandidates> reversed(vips.rbegin(), vips.rend());
  EXPECT_EQ(assignAnnouncers(reversed, live, {}, false), first);
}

}  // namespace
}  // namespace flowlb::controller
