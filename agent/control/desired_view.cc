#include "agent/control/desired_view.h"

#include "agent/control/convert_bgp.h"

namespace flowlb::agent {

namespace pb = flowlb::v1;

DesiredView::Outcome DesiredView::receive(const pb::DesiredState& in) {
  Outcome out;
  if (in.generation() <= active_generation_) {
    out.kind = Kind::kRejected;
    out.error = "generation " + std::to_string(in.generation()) +
                " is not greater than the one running (" + std::to_string(active_generation_) + ")";
    return out;
  }
  Snapshot next;
  switch (in.kind()) {
    case pb::DESIRED_STATE_KIND_FULL: break;
    case pb::DESIRED_STATE_KIND_INCREMENTAL:
      if (!active_ || in.base_generation() != active_generation_) {
        out.kind = Kind::kBaseMismatch;
        out.error = "base generation " + std::to_string(in.base_generation()) +
                    ", but this agent runs " + std::to_string(active_generation_);
        return out;
      }
      next = *active_;
      for (const std::string& key : in.removed_service_keys()) next.services.erase(key);
      for (const pb::IpAddress& vip : in.removed_announcement_vips()) {
        if (auto a = pbAddress(vip)) next.announcements.erase(*a);
      }
      break;
    default:
      out.kind = Kind::kRejected;
      out.error = "desired state kind " + std::to_string(in.kind()) + " is not FULL or INCREMENTAL";
      return out;
  }
  for (const pb::VirtualService& vs : in.services()) {
    next.services[vs.key()] = std::make_shared<const ConvertedService>(convertService(vs, node_));
  }
  next.other_problems.clear();
  for (const pb::Announcement& a : in.announcements()) {
    auto vip = pbAddress(a.vip());
    if (!vip) {
      next.other_problems.push_back("announcement: " + vip.error());
      continue;
    }
    Snapshot::Announced& entry = next.announcements[*vip];
    entry.announcer = a.mode() != pb::ANNOUNCEMENT_MODE_BGP && a.announcer();
    entry.bgp.reset();
    if (a.mode() == pb::ANNOUNCEMENT_MODE_BGP) entry.bgp = a.bgp();
  }
  // FULL: unset means none; INCREMENTAL: unset means unchanged.
  if (in.has_bgp()) {
    next.bgp = in.bgp();
  } else if (in.kind() == pb::DESIRED_STATE_KIND_FULL) {
    next.bgp.reset();
  }
  if (in.has_health_probers()) {
    next.health_probers = convertHealthProbers(in.health_probers());
  } else if (in.kind() == pb::DESIRED_STATE_KIND_FULL) {
    next.health_probers = {};
  }
  out.state = complete(in.generation(), next);
  out.state.full = in.kind() == pb::DESIRED_STATE_KIND_FULL;
  pending_generation_ = in.generation();
  pending_ = std::move(next);
  return out;
}

void DesiredView::applied(uint64_t generation) {
  if (pending_ && generation == pending_generation_) {
    active_ = std::move(pending_);
    pending_.reset();
  }
  if (generation > active_generation_) active_generation_ = generation;
}

ReceivedState DesiredView::complete(uint64_t generation, const Snapshot& s) const {
  ReceivedState r;
  r.desired.generation = generation;
  r.desired.health_probers = s.health_probers;
  r.desired.services.reserve(s.services.size());
  for (const auto& [key, c] : s.services) {
    r.problems.insert(r.problems.end(), c->problems.begin(), c->problems.end());
    if (c->spec) {
      r.desired.services.push_back(*c->spec);
      auto a = s.announcements.find(c->spec->vip);
      r.desired.services.back().announced_by_bgp = a != s.announcements.end() && a->second.bgp;
    }
  }
  std::vector<std::pair<IpAddr, pb::BgpAnnouncement>> bgp_vips;
  for (const auto& [vip, a] : s.announcements) {
    if (a.announcer) r.announce.push_back(vip);
    if (a.bgp) bgp_vips.emplace_back(vip, *a.bgp);
  }
  r.other_problems = s.other_problems;
  if (s.bgp) r.bgp = convertBgp(*s.bgp, bgp_vips, &r.other_problems);
  return r;
}

}  // namespace flowlb::agent
