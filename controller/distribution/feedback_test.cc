#include "controller/distribution/feedback.h"

#include <gtest/gtest.h>

namespace flowlb::controller {
namespace {

IpAddr ip(const char* s) {
  return *IpAddr::parse(s);
}

View view() {
  View v;
  v.generation = 5;
  v.nodes =
      std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"n1", "n2", "n3"});
  const auto encode = [](const DesiredService& d, bool) { return d.key; };
  for (const char* key : {"shop/web/http/ipv4", "shop/web/https/ipv4", "shop/dns/dns/ipv6"}) {
    auto d = std::make_shared<DesiredService>();
    d->key = key;
    d->vip =
        std::string(key).find("dns") != std::string::npos ? ip("2001:db8::53") : ip("192.0.2.1");
    v.services.push_back(std::make_shared<const Entry>(d, encode));
  }
  v.announcers = {{ip("192.0.2.1"), "n1"}, {ip("2001:db8::53"), "n3"}};
  return v;
}

TEST(FeedbackTest, AnnouncersAndRefusalsPerService) {
  AgentReport n1{"n1", true, false, "", {}};
  AgentReport n2{"n2", true, false, "", {{"shop/dns/dns/ipv6", {"UNSUPPORTED", "no IPv6 source"}}}};
  AgentReport n3{"n3", false, false, "", {}};   // not acknowledged anything yet
  AgentReport gone{"n9", true, false, "", {}};  // runs nothing: not counted
  const auto fb = serviceFeedback(view(), {"n1", "n2"}, true, {n1, n2, n3, gone});
  ASSERT_EQ(fb.size(), 2u);
  const ServiceFeedback& web = fb.at("shop/web");
  EXPECT_EQ(web.nodes, 3);
  EXPECT_TRUE(web.programmed_known);
  EXPECT_TRUE(web.failed.empty());
  EXPECT_EQ(web.announcers, (std::vector<std::pair<IpAddr, std::string>>{{ip("192.0.2.1"), "n1"}}));
  const ServiceFeedback& dns = fb.at("shop/dns");
  ASSERT_EQ(dns.failed.size(), 1u);
  EXPECT_EQ(dns.failed[0], (ApplyFailure{"n2", "UNSUPPORTED", "no IPv6 source"}));
  // n3 announces the IPv6 VIP, but its agent is not live: nobody does.
  EXPECT_EQ(dns.announcers[0].second, "");
  // A whole state refused counts against every Service.
  n1.rejected = true;
  n1.reject_message = "bad";
  const auto r = serviceFeedback(view(), {"n1", "n2"}, true, {n1, n2});
  EXPECT_EQ(r.at("shop/web").failed.at(0).code, "REJECTED");
  // The Events these make: one per distinct refusal, one per announced VIP.
  EXPECT_EQ(agentEvents(dns).size(), 1u);
  EXPECT_EQ(agentEvents(dns)[0].reason, "AgentRefusedUnsupported");
  EXPECT_EQ(announceEvents(web).at(0).message, "192.0.2.1 announced by node n1");
  EXPECT_TRUE(announceEvents(dns).empty());
  EXPECT_EQ(serviceKeyOf("a/b/c/ipv4"), "a/b");
}

}  // namespace
}  // namespace flowlb::controller
