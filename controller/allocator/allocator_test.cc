#include "controller/allocator/allocator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flowlb::controller {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

IpPool pool(const char* name, std::vector<const char*> ranges, bool auto_assign = true) {
  IpPool p;
  p.name = name;
  for (const char* r : ranges) p.ranges.push_back(*AddressRange::parse(r));
  p.auto_assign = auto_assign;
  return p;
}

LbService svc(const char* name, int64_t created = 0, std::vector<ServicePort> ports = {{6, 80}}) {
  LbService s;
  s.ns = "default";
  s.name = name;
  s.created = created;
  s.ports = std::move(ports);
  return s;
}

std::vector<std::string> ips(const Allocation& a) {
  std::vector<std::string> out;
  for (const IpAddr& x : a.ips) out.push_back(x.toString());
  return out;
}

TEST(AddressRangeTest, ParsesCidrRangesAndSingleAddresses) {
  auto c = AddressRange::parse("192.0.2.0/30");
  ASSERT_TRUE(c.isOk());
  EXPECT_EQ(c->first.toString(), "192.0.2.0");
  EXPECT_EQ(c->last.toString(), "192.0.2.3");
  EXPECT_EQ(c->size(), 4u);
  auto r = AddressRange::parse("10.0.0.10-10.0.0.20");
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->size(), 11u);
  EXPECT_TRUE(r->contains(ip("10.0.0.15")));
  EXPECT_FALSE(r->contains(ip("10.0.0.21")));
  EXPECT_EQ(AddressRange::parse("2001:db8::/64")->size(), UINT64_MAX);  // saturated
  EXPECT_EQ(AddressRange::parse("2001:db8::/120")->size(), 256u);
  EXPECT_FALSE(AddressRange::parse("10.0.0.20-10.0.0.10").isOk());
  EXPECT_FALSE(AddressRange::parse("10.0.0.1-2001:db8::1").isOk());
  EXPECT_FALSE(AddressRange::parse("10.0.0.0/40").isOk());
}

TEST(AllocatorTest, LowestFreeAddressInOrderOfAge) {
  auto out =
      Allocator::allocate({pool("p", {"192.0.2.0/30"})}, {svc("b", 2), svc("a", 1), svc("c", 3)});
  EXPECT_EQ(ips(out["default/a"]), std::vector<std::string>{"192.0.2.0"});
  EXPECT_EQ(ips(out["default/b"]), std::vector<std::string>{"192.0.2.1"});
  EXPECT_EQ(ips(out["default/c"]), std::vector<std::string>{"192.0.2.2"});
  EXPECT_TRUE(out["default/a"].satisfied);
  EXPECT_EQ(out["default/a"].pool, "p");
}

TEST(AllocatorTest, AvoidBuggyIpsSkipsDotZeroAndDot255) {
  IpPool p = pool("p", {"10.0.0.255-10.0.1.1"});
  p.avoid_buggy_ips = true;
  auto out = Allocator::allocate({p}, {svc("a", 1), svc("b", 2)});
  EXPECT_EQ(ips(out["default/a"]), std::vector<std::string>{"10.0.1.1"});
  EXPECT_FALSE(out["default/b"].satisfied);
  EXPECT_EQ(out["default/b"].reason, Reason::kPoolExhausted);
  auto usage = Allocator::usage({p}, out);
  EXPECT_EQ(usage["p"].used, 1u);
  EXPECT_EQ(usage["p"].free, 0u);  // 10.0.0.255 and 10.0.1.0 are never handed out
}

TEST(AllocatorTest, ExhaustionIsReportedWithThePoolAndWhatToDo) {
  auto out = Allocator::allocate({pool("small", {"192.0.2.1/32"})}, {svc("a", 1), svc("b", 2)});
  EXPECT_TRUE(out["default/a"].satisfied);
  EXPECT_FALSE(out["default/b"].satisfied);
  EXPECT_EQ(out["default/b"].reason, Reason::kPoolExhausted);
  EXPECT_THAT(out["default/b"].message, HasSubstr("'small'"));
  EXPECT_TRUE(out["default/b"].ips.empty());
}

TEST(AllocatorTest, RestartWithExistingAllocationsKeepsEveryAddressAndHandsNoneTwice) {
  // The status says b holds .0 and a holds .1 (an earlier controller decided so).
  auto a = svc("a", 1);
  a.current = {ip("192.0.2.1")};
  auto b = svc("b", 2);
  b.current = {ip("192.0.2.0")};
  auto c = svc("c", 3);
  auto out = Allocator::allocate({pool("p", {"192.0.2.0/30"})}, {c, b, a});
  EXPECT_EQ(ips(out["default/a"]), std::vector<std::string>{"192.0.2.1"});
  EXPECT_EQ(ips(out["default/b"]), std::vector<std::string>{"192.0.2.0"});
  EXPECT_EQ(ips(out["default/c"]), std::vector<std::string>{"192.0.2.2"});
}

TEST(AllocatorTest, AConflictingPreExistingAddressIsReportedNotStolen) {
  auto older = svc("older", 1);
  older.current = {ip("192.0.2.0")};
  auto newer = svc("newer", 2);
  newer.current = {ip("192.0.2.0")};  // split brain left two claims
  auto out = Allocator::allocate({pool("p", {"192.0.2.0/30"})}, {newer, older});
  EXPECT_EQ(ips(out["default/older"]), std::vector<std::string>{"192.0.2.0"});
  EXPECT_EQ(ips(out["default/newer"]), std::vector<std::string>{"192.0.2.1"});
  // Reported, but not the reason: once the status says 192.0.2.1 the
  // conflict is history (issue 13.5: a condition naming it was replaced by
  // "Allocated" 70 ms later, two writes fighting).
  EXPECT_EQ(out["default/newer"].reason, Reason::kAllocated);
  ASSERT_EQ(out["default/newer"].conflicts.size(), 1u);
  EXPECT_THAT(out["default/newer"].conflicts[0], HasSubstr("default/older"));
}

// Issue 13.5: IPv6 allocation started at 2001:db8:100::, the subnet-router
// anycast address.
TEST(AllocatorTest, Ipv6NeverGetsTheSubnetRouterAnycastAddress) {
  auto a = svc("a", 1);
  a.families = {Family::kV6};
  auto b = svc("b", 2);
  b.families = {Family::kV6};
  IpPool p = pool("p", {"2001:db8:100::/126"});
  auto out = Allocator::allocate({p}, {a, b});
  EXPECT_EQ(ips(out["default/a"]), std::vector<std::string>{"2001:db8:100::1"});
  EXPECT_EQ(ips(out["default/b"]), std::vector<std::string>{"2001:db8:100::2"});
  const auto u = Allocator::usage({p}, out);
  EXPECT_EQ(u.at("p").used, 2u);
  EXPECT_EQ(u.at("p").free, 1u);  // ::3; ::0 is not counted as free
  // Asked for by name, it is the user's choice.
  auto c = svc("c", 3);
  c.families = {Family::kV6};
  c.requested = {ip("2001:db8:100::")};
  EXPECT_EQ(ips(Allocator::allocate({p}, {c})["default/c"]),
            std::vector<std::string>{"2001:db8:100::"});
}

TEST(AllocatorTest, RequestedAddressesAreHonouredOrRefusedWithoutSubstitute) {
  auto a = svc("a", 1);
  a.requested = {ip("192.0.2.3")};
  auto b = svc("b", 2);
  b.requested = {ip("192.0.2.3")};  // taken by a
  auto c = svc("c", 3);
  c.requested = {ip("198.51.100.1")};  // in no pool
  auto out = Allocator::allocate({pool("p", {"192.0.2.0/30"})}, {a, b, c});
  EXPECT_EQ(ips(out["default/a"]), std::vector<std::string>{"192.0.2.3"});
  EXPECT_FALSE(out["default/b"].satisfied);
  EXPECT_EQ(out["default/b"].reason, Reason::kRequestedIpTaken);
  EXPECT_THAT(out["default/b"].message, HasSubstr("default/a"));
  EXPECT_FALSE(out["default/c"].satisfied);
  EXPECT_EQ(out["default/c"].reason, Reason::kRequestedIpNotInPool);
  EXPECT_TRUE(out["default/c"].ips.empty());
}

TEST(AllocatorTest, RequestedAddressesGoBeforeAutomaticOnes) {
  auto early = svc("early", 1);  // automatic, older
  auto asks = svc("asks", 2);
  asks.requested = {ip("192.0.2.0")};
  auto out = Allocator::allocate({pool("p", {"192.0.2.0/30"})}, {early, asks});
  EXPECT_EQ(ips(out["default/asks"]), std::vector<std::string>{"192.0.2.0"});
  EXPECT_EQ(ips(out["default/early"]), std::vector<std::string>{"192.0.2.1"});
}

TEST(AllocatorTest, SharingKeySharesAnAddressWhenPortsDiffer) {
  auto web = svc("web", 1, {{6, 80}});
  web.sharing_key = "k";
  web.current = {ip("192.0.2.0")};  // allocated earlier
  auto dns = svc("dns", 2, {{17, 53}});
  dns.sharing_key = "k";
  auto clash = svc("clash", 3, {{6, 80}});
  clash.sharing_key = "k";
  clash.requested = {ip("192.0.2.0")};
  auto other = svc("other", 4, {{6, 443}});  // no key: never shares
  auto out = Allocator::allocate({pool("p", {"192.0.2.0/30"})}, {web, dns, clash, other});
  EXPECT_EQ(ips(out["default/web"]), std::vector<std::string>{"192.0.2.0"});
  EXPECT_EQ(ips(out["default/dns"]), std::vector<std::string>{"192.0.2.0"});
  EXPECT_FALSE(out["default/clash"].satisfied);
  EXPECT_EQ(out["default/clash"].reason, Reason::kPortConflict);
  EXPECT_THAT(out["default/clash"].message, HasSubstr("80/TCP"));
  EXPECT_EQ(ips(out["default/other"]), std::vector<std::string>{"192.0.2.1"});
}

TEST(AllocatorTest, PoolChoiceSelectorsNamespacesAndAutoAssign) {
  IpPool manual = pool("manual", {"198.51.100.0/30"}, /*auto_assign=*/false);
  IpPool team = pool("team", {"203.0.113.0/30"});
  team.namespaces = {"team"};
  team.service_selector = {{"tier", "front"}};
  IpPool general = pool("general", {"192.0.2.0/30"});
  auto chosen = svc("chosen", 1);
  chosen.pool = "manual";
  auto fronted = svc("fronted", 2);
  fronted.ns = "team";
  fronted.labels = {{"tier", "front"}};
  auto plain = svc("plain", 3);
  auto missing = svc("missing", 4);
  missing.pool = "nope";
  auto out = Allocator::allocate({manual, team, general}, {chosen, fronted, plain, missing});
  EXPECT_EQ(out["default/chosen"].pool, "manual");
  EXPECT_EQ(out["team/fronted"].pool, "team");
  EXPECT_EQ(out["default/plain"].pool,
            "general");  // manual is not autoAssign, team not its namespace
  EXPECT_EQ(out["default/missing"].reason, Reason::kUnknownPool);
  EXPECT_THAT(out["default/missing"].message, HasSubstr("'nope'"));
  auto only_team = Allocator::allocate({team}, {plain});
  EXPECT_EQ(only_team["default/plain"].reason, Reason::kNoMatchingPool);
}

// Issue 10: a pool whose addresses could not be read is not "unknown": the
// Service is told why the pool it names gives nothing.
TEST(AllocatorTest, APoolWithNoValidAddressIsNamedWithItsReason) {
  IpPool broken;
  broken.name = "broken";
  broken.invalid = {"'not-an-ip': not an address, CIDR or range"};
  auto s = svc("web", 1);
  s.pool = "broken";
  auto out = Allocator::allocate({broken}, {s});
  EXPECT_EQ(out["default/web"].reason, Reason::kInvalidPool);
  EXPECT_THAT(out["default/web"].message, HasSubstr("'not-an-ip'"));
  EXPECT_THAT(out["default/web"].message, Not(HasSubstr("does not exist")));
  const auto usage = Allocator::usage({broken}, out);
  EXPECT_EQ(usage.at("broken").invalid, broken.invalid);
}

TEST(AllocatorTest, DualStackGetsOneAddressPerFamily) {
  auto both = svc("both", 1);
  both.families = {Family::kV4, Family::kV6};
  both.require_all_families = true;
  auto prefer = svc("prefer", 2);
  prefer.families = {Family::kV6, Family::kV4};
  auto out = Allocator::allocate({pool("p", {"192.0.2.0/31", "2001:db8::/126"})}, {both, prefer});
  // (2001:db8:: is the subnet-router anycast address: never given out.)
  EXPECT_EQ(ips(out["default/both"]), (std::vector<std::string>{"192.0.2.0", "2001:db8::1"}));
  EXPECT_EQ(ips(out["default/prefer"]), (std::vector<std::string>{"2001:db8::2", "192.0.2.1"}));
  // RequireDualStack with no IPv6 left: nothing, and the IPv4 half is not kept.
  auto late = svc("late", 3);
  late.families = {Family::kV4, Family::kV6};
  late.require_all_families = true;
  auto out2 = Allocator::allocate({pool("p", {"192.0.2.0/30", "2001:db8::1/128"})}, {both, late});
  EXPECT_FALSE(out2["default/late"].satisfied);
  EXPECT_TRUE(out2["default/late"].ips.empty());
}

TEST(AllocatorTest, ShrunkOrDeletedPoolNeverMovesARunningServicesAddress) {
  auto a = svc("a", 1);
  a.current = {ip("192.0.2.2")};
  // The pool now ends at .1: a keeps .2 and is told why; the new b gets .0.
  auto out = Allocator::allocate({pool("p", {"192.0.2.0/31"})}, {a, svc("b", 2)});
  EXPECT_EQ(ips(out["default/a"]), std::vector<std::string>{"192.0.2.2"});
  EXPECT_TRUE(out["default/a"].satisfied);
  EXPECT_THAT(out["default/a"].message, HasSubstr("no longer in any IPPool"));
  EXPECT_EQ(ips(out["default/b"]), std::vector<std::string>{"192.0.2.0"});
}

TEST(AllocatorTest, TheAnswerDoesNotDependOnListingOrder) {
  std::vector<LbService> services;
  for (int i = 0; i < 20; ++i) services.push_back(svc(("s" + std::to_string(i)).c_str(), i % 3));
  const std::vector<IpPool> pools = {pool("p", {"10.0.0.0/28"})};
  auto first = Allocator::allocate(pools, services);
  std::reverse(services.begin(), services.end());
  auto second = Allocator::allocate(pools, services);
  for (const auto& [k, a] : first) EXPECT_EQ(ips(a), ips(second[k])) << k;
}

}  // namespace
}  // namespace flowlb::controller
