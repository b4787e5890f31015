#include "agent/announce/bgp_announcement.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "agent/announce/bgp/routes.h"

namespace flowlb::agent {

Status BgpAnnouncement::update(const bgp::BgpSettings& settings, const DesiredState& desired,
                               const std::vector<ServiceError>& refused) {
  if (!settings.enabled()) {
    if (speaker_) spdlog::info("event=bgp_stopped reason=no_peers");
    speaker_.reset();
    // A later speaker starts unconfigured: the same peers coming back
    // must be configured on it (they once were not: e2e_bgp_crd).
    first_ = true;
    return Status::ok();
  }
  if (!speaker_) {
    auto s = bgp::Speaker::start();
    if (!s) return s.status();
    speaker_ = std::move(*s);
  }
  if (!(settings == settings_) || first_) speaker_->configure(settings);
  first_ = false;
  settings_ = settings;
  const auto vips = bgp::eligibleVips(desired.services, refused, node_);
  speaker_->setRoutes(bgp::routesPerPeer(settings, vips));
  spdlog::info("event=bgp_routes_updated node={} vips={} peers={}", node_, vips.size(),
               settings.peers.size());
  return Status::ok();
}

void BgpAnnouncement::report(ControllerLink* link) {
  const uint64_t now =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  reported_ = speaker_ ? bgpSessionReports(speaker_->status(), reported_, now)
                       : std::vector<BgpSessionReport>{};
  link->setBgpSessions(reported_);
}

}  // namespace flowlb::agent
