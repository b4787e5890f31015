#include "agent/control/bgp_report.h"

#include <gtest/gtest.h>

namespace flowlb::agent {
namespace {

bgp::PeerStatus peer(const std::string& name, bgp::State state, bool bfd = false,
                     bfd::State bfd_state = bfd::State::kDown) {
  bgp::PeerStatus p;
  p.name = name;
  p.session.state = state;
  p.session.routes_advertised = 3;
  p.session.last_error = "hold timer expired";
  p.bfd_enabled = bfd;
  p.bfd_state = bfd_state;
  return p;
}

TEST(BgpReportTest, ASessionKeepsItsSinceWhileItsStateHoldsAndTakesNowWhenItChanges) {
  bgp::SpeakerStatus st;
  st.peers = {peer("tor-b", bgp::State::kConnect), peer("tor-a", bgp::State::kEstablished)};
  auto first = bgpSessionReports(st, {}, 1000);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].peer, "tor-a");  // sorted
  EXPECT_EQ(first[0].state, BgpSessionReport::State::kEstablished);
  EXPECT_EQ(first[0].since_unix_ms, 1000u);
  EXPECT_EQ(first[0].routes_advertised, 3u);
  EXPECT_EQ(first[0].last_error, "hold timer expired");
  EXPECT_FALSE(first[0].bfd.has_value());

  st.peers[0].session.state = bgp::State::kEstablished;  // tor-b comes up
  auto second = bgpSessionReports(st, first, 5000);
  EXPECT_EQ(second[0].since_unix_ms, 1000u) << "tor-a is still Established";
  EXPECT_EQ(second[1].since_unix_ms, 5000u) << "tor-b changed state";
  EXPECT_EQ(second[1].state, BgpSessionReport::State::kEstablished);
}

TEST(BgpReportTest, ABfdChangeIsAChangeOfState) {
  bgp::SpeakerStatus st;
  st.peers = {peer("tor", bgp::State::kEstablished, true, bfd::State::kUp)};
  auto first = bgpSessionReports(st, {}, 1000);
  ASSERT_TRUE(first[0].bfd.has_value());
  EXPECT_EQ(*first[0].bfd, BgpSessionReport::Bfd::kUp);
  st.peers[0].bfd_state = bfd::State::kDown;
  auto second = bgpSessionReports(st, first, 2000);
  EXPECT_EQ(*second[0].bfd, BgpSessionReport::Bfd::kDown);
  EXPECT_EQ(second[0].since_unix_ms, 2000u);
  EXPECT_EQ(bgpSessionReports(st, second, 3000), second) << "nothing changed: nothing to send";
}

}  // namespace
}  // namespace flowlb::agent
