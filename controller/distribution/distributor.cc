#include "controller/distribution/distributor.h"

#include <algorithm>
#include <iterator>
#include <optional>

namespace flowlb::controller {
namespace {

// Views followed back before giving up and comparing two views whole.
constexpr int kMaxChain = 64;

using ServicePuts =
    std::vector<std::pair<std::string, std::optional<std::shared_ptr<const Entry>>>>;
using AnnouncerPuts = std::vector<std::pair<IpAddr, std::optional<AnnouncerEntry>>>;

}  // namespace

Entry::Entry(std::shared_ptr<const DesiredService> s, const Encoder& encode)
    : service_(std::move(s)), compact_(encode(*service_, false)), encode_(encode) {}

const std::string& Entry::encodedWithBackendKeys() const {
  std::call_once(keyed_once_, [this] { keyed_ = encode_(*service_, true); });
  return keyed_;
}

bool View::runs(const std::string& node) const {
  return nodes && std::binary_search(nodes->begin(), nodes->end(), node);
}

NodeUpdate nodeUpdate(const std::shared_ptr<const View>& base,
                      const std::shared_ptr<const View>& current, const std::string& node) {
  NodeUpdate u;
  u.view = current;
  u.generation = current->generation;
  const bool runs_now = current->runs(node);
  if (!base) {
    u.full = true;
    if (!runs_now) return u;  // not a ready node: nothing to run
    u.bgp = current->bgp.get();
    u.probers = current->probers.get();
    u.upserts.reserve(current->services.size());
    for (const auto& e : current->services) u.upserts.push_back(e.get());
    u.announcements.assign(current->announcers.begin(), current->announcers.end());
    return u;
  }
  u.base = base->generation;
  if (base == current) return u;
  const bool ran = base->runs(node);
  if (!ran && !runs_now) return u;

  // The keys and VIPs that may differ: from the chain of views when it
  // reaches back to `base`, else everything.
  std::set<std::string> keys;
  std::set<IpAddr> vips;
  bool whole = ran != runs_now;
  if (!whole) {
    std::shared_ptr<const View> v = current;
    int hops = 0;
    while (v && v->generation > base->generation && hops++ < kMaxChain) {
      keys.insert(v->changed_keys.begin(), v->changed_keys.end());
      vips.insert(v->changed_vips.begin(), v->changed_vips.end());
      v = v->previous.lock();
    }
    whole = !v || v != base;
  }
  {
    std::shared_ptr<const View> v = current;
    int hops = 0;
    while (!whole && v && v->generation > base->generation && hops++ < kMaxChain) {
      u.bgp_changed = u.bgp_changed || v->bgp_changed;
      v = v->previous.lock();
    }
    if (whole) u.bgp_changed = base->bgp != current->bgp || ran != runs_now;
    if (u.bgp_changed && runs_now) u.bgp = current->bgp.get();
  }
  {
    std::shared_ptr<const View> v = current;
    int hops = 0;
    while (!whole && v && v->generation > base->generation && hops++ < kMaxChain) {
      u.probers_changed = u.probers_changed || v->probers_changed;
      v = v->previous.lock();
    }
    if (whole) u.probers_changed = base->probers != current->probers || ran != runs_now;
    if (u.probers_changed) u.probers = current->probers.get();
  }
  auto find = [](const View& view, const std::string& key) -> const Entry* {
    const std::shared_ptr<const Entry>* e = view.services.find(key);
    return e ? e->get() : nullptr;
  };
  auto announcer = [](const View& view, const IpAddr& vip) -> const AnnouncerEntry* {
    return view.announcers.find(vip);
  };
  if (whole) {
    for (const auto& e : base->services) keys.insert(e->key());
    for (const auto& e : current->services) keys.insert(e->key());
    for (const auto& a : base->announcers) vips.insert(a.vip);
    for (const auto& a : current->announcers) vips.insert(a.vip);
  }
  for (const std::string& key : keys) {
    const Entry* before = ran ? find(*base, key) : nullptr;
    const Entry* now = runs_now ? find(*current, key) : nullptr;
    if (now && now != before && !(before && now->service().sameForAgents(before->service()))) {
      u.upserts.push_back(now);
    } else if (!now && before) {
      u.removed.push_back(key);
    }
  }
  if (u.bgp_changed && runs_now) {
    // A VIP's BGP advertisements may have changed: every announcement
    // again (BGP changes are rare; announcements are small).
    for (const auto& a : current->announcers) vips.insert(a.vip);
  }
  for (const IpAddr& vip : vips) {
    const AnnouncerEntry* before = ran ? announcer(*base, vip) : nullptr;
    const AnnouncerEntry* now = runs_now ? announcer(*current, vip) : nullptr;
    if (now && (u.bgp_changed || !(before && *before == *now))) {
      u.announcements.push_back(*now);
    } else if (!now && before) {
      u.removed_vips.push_back(vip);
    }
  }
  return u;
}

Distributor::Distributor(Entry::Encoder encode, DistributionOptions options, Clock* clock)
    : encode_(std::move(encode)),
      opt_(options),
      clock_(clock),
      settle_until_(clock_->now() + opt_.settle) {
  auto v = std::make_shared<View>();
  v->generation = 1;
  v->nodes = std::make_shared<const std::vector<std::string>>();
  v->probers = probers_;
  view_ = std::move(v);
}

bool Distributor::settling() const {
  return clock_->now() < settle_until_;
}

std::optional<std::chrono::steady_clock::time_point> Distributor::settleDeadline() const {
  if (!settling()) return std::nullopt;
  return settle_until_;
}

void Distributor::resettle() {
  settle_until_ = clock_->now() + opt_.settle;
  seen_ = live_;
  announcers_stale_ = true;
}

bool Distributor::setDesired(const Reconciled& r) {
  std::vector<std::string> changed;
  ++pass_;
  size_t listed = 0;
  for (const auto& d : r.desired) {
    auto [it, fresh] = by_key_.try_emplace(d->key);
    Slot& slot = it->second;
    if (fresh || !(slot.entry->shared() == d || slot.entry->service().sameForAgents(*d))) {
      slot.entry = std::make_shared<const Entry>(d, encode_);
      changed.push_back(d->key);
    }
    if (slot.seen != pass_) ++listed;
    slot.seen = pass_;
  }
  if (listed != by_key_.size()) {  // some are gone
    for (auto it = by_key_.begin(); it != by_key_.end();) {
      if (it->second.seen == pass_) {
        ++it;
      } else {
        changed.push_back(it->first);
        it = by_key_.erase(it);
      }
    }
  }
  std::sort(changed.begin(), changed.end());
  changed.erase(std::unique(changed.begin(), changed.end()), changed.end());
  // The view's list with only the changed entries put in or taken out.
  ServicePuts puts;
  puts.reserve(changed.size());
  for (const std::string& key : changed) {
    auto it = by_key_.find(key);
    if (it == by_key_.end()) {
      puts.emplace_back(key, std::nullopt);
    } else {
      puts.emplace_back(key, it->second.entry);
    }
  }
  ServiceList services = puts.empty() ? view_->services : view_->services.edit(puts);
  if (!(vips_ == r.vips)) {
    vips_ = r.vips;
    announcers_stale_ = true;
  }
  bgp_ = r.bgp;
  std::shared_ptr<const std::vector<std::string>> nodes = view_->nodes;
  if (*nodes != r.nodes) nodes = std::make_shared<const std::vector<std::string>>(r.nodes);
  return publish(std::move(services), std::move(changed), std::move(nodes), false);
}

bool Distributor::patchDesired(const DesiredDelta& d) {
  std::vector<std::pair<std::string, std::shared_ptr<const Entry>>> put;  // nullptr: removed
  for (const auto& s : d.upserts) {
    auto [it, fresh] = by_key_.try_emplace(s->key);
    Slot& slot = it->second;
    slot.seen = pass_;
    if (!fresh && (slot.entry->shared() == s || slot.entry->service().sameForAgents(*s))) continue;
    slot.entry = std::make_shared<const Entry>(s, encode_);
    put.emplace_back(s->key, slot.entry);
  }
  for (const std::string& key : d.removed) {
    if (by_key_.erase(key)) put.emplace_back(key, nullptr);
  }
  for (const VipCandidates& v : d.vips) {
    auto at = std::lower_bound(vips_.begin(), vips_.end(), v.vip,
                               [](const VipCandidates& x, const IpAddr& a) { return x.vip < a; });
    if (at != vips_.end() && at->vip == v.vip) {
      if (*at == v) continue;
      *at = v;
    } else {
      vips_.insert(at, v);
    }
    stale_vips_.insert(v.vip);
  }
  for (const IpAddr& vip : d.removed_vips) {
    auto at = std::lower_bound(vips_.begin(), vips_.end(), vip,
                               [](const VipCandidates& x, const IpAddr& a) { return x.vip < a; });
    if (at == vips_.end() || at->vip != vip) continue;
    vips_.erase(at);
    stale_vips_.insert(vip);
  }
  if (put.empty()) return publish(view_->services, {}, view_->nodes, false);
  std::stable_sort(put.begin(), put.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  // The view's list, with only these entries replaced, added or taken out.
  ServicePuts puts;
  puts.reserve(put.size());
  std::vector<std::string> changed;
  changed.reserve(put.size());
  for (size_t i = 0; i < put.size(); ++i) {
    // Upserted and removed: the removal stands (as in by_key_).
    if (i + 1 < put.size() && put[i + 1].first == put[i].first) continue;
    auto& [key, entry] = put[i];
    if (entry) {
      puts.emplace_back(key, std::move(entry));
    } else {
      puts.emplace_back(key, std::nullopt);
    }
    changed.push_back(key);
  }
  return publish(view_->services.edit(puts), std::move(changed), view_->nodes, false);
}

bool Distributor::setLive(const std::string& node, bool live) {
  const bool was = live_.count(node) > 0;
  if (was == live) return false;
  if (live) {
    live_.insert(node);
    seen_.insert(node);
  } else {
    live_.erase(node);
  }
  announcers_stale_ = true;
  return publish(view_->services, {}, view_->nodes, false);
}

bool Distributor::tick() {
  return publish(view_->services, {}, view_->nodes, false);
}

bool Distributor::generationAbove(uint64_t g) {
  if (view_->generation > g) return false;
  auto v = std::make_shared<View>(*view_);
  v->generation = g + 1;
  v->previous = view_;
  v->changed_keys.clear();
  v->changed_vips.clear();
  v->nodes_changed = false;
  v->bgp_changed = false;
  v->probers_changed = false;
  view_ = std::move(v);
  return true;
}

bool Distributor::setProbers(std::vector<std::string> nodes) {
  if (*probers_ == nodes) return false;
  probers_ = std::make_shared<const std::vector<std::string>>(std::move(nodes));
  return publish(view_->services, {}, view_->nodes, false);
}

bool Distributor::publish(ServiceList services, std::vector<std::string> changed_keys,
                          std::shared_ptr<const std::vector<std::string>> nodes, bool force) {
  // Settling, or the end of settling, can move announcers by itself.
  const bool now_settling = settling();
  const bool decide = announcers_stale_ || now_settling || decided_settling_;
  if (decide) stale_vips_.clear();  // all of them
  const bool bgp_changed = bgp_ != view_->bgp && !(bgp_ && view_->bgp && *bgp_ == *view_->bgp);
  const bool probers_changed = probers_ != view_->probers;
  AnnouncerList entries = view_->announcers;  // shared, unless some moved
  std::vector<IpAddr> changed_vips;
  if (!decide && stale_vips_.empty()) {
    if (!force && changed_keys.empty() && nodes == view_->nodes && !bgp_changed &&
        !probers_changed) {
      return false;
    }
  } else if (!decide) {
    // Only some VIPs' candidates changed: the policy decides each VIP on
    // its own, so only those are decided again.
    std::vector<VipCandidates> some;
    for (const IpAddr& vip : stale_vips_) {
      auto at = std::lower_bound(vips_.begin(), vips_.end(), vip,
                                 [](const VipCandidates& x, const IpAddr& a) { return x.vip < a; });
      if (at != vips_.end() && at->vip == vip) some.push_back(*at);
    }
    const AnnouncerMap next = assignAnnouncers(some, live_, announcers_, false);
    AnnouncerPuts puts;
    for (const IpAddr& vip : stale_vips_) {
      auto n = next.find(vip);
      const AnnouncerEntry* had = view_->announcers.find(vip);
      if (n == next.end()) {  // the VIP is gone
        announcers_.erase(vip);
        if (!had) continue;
        puts.emplace_back(vip, std::nullopt);
      } else {
        announcers_[vip] = n->second;
        if (had && had->node == n->second) continue;
        puts.emplace_back(vip, AnnouncerEntry{vip, n->second});
      }
      changed_vips.push_back(vip);  // stale_vips_ is sorted
    }
    if (!puts.empty()) entries = view_->announcers.edit(puts);
    stale_vips_.clear();
  } else {
    std::set<std::string> lost;
    if (now_settling) {
      std::set_difference(seen_.begin(), seen_.end(), live_.begin(), live_.end(),
                          std::inserter(lost, lost.end()));
    }
    AnnouncerMap next = assignAnnouncers(vips_, live_, announcers_, now_settling, lost);
    announcers_stale_ = false;
    decided_settling_ = now_settling;
    // Only the VIPs whose announcer changed are put in the shared list.
    AnnouncerPuts puts;
    auto a = view_->announcers.begin(), ae = view_->announcers.end();
    auto b = next.begin(), be = next.end();
    while (a != ae || b != be) {
      if (b == be || (a != ae && a->vip < b->first)) {
        puts.emplace_back(a->vip, std::nullopt);
        ++a;
      } else if (a == ae || b->first < a->vip) {
        puts.emplace_back(b->first, AnnouncerEntry{b->first, b->second});
        ++b;
      } else {
        if (a->node != b->second) puts.emplace_back(a->vip, AnnouncerEntry{a->vip, b->second});
        ++a;
        ++b;
      }
    }
    for (const auto& [vip, entry] : puts) changed_vips.push_back(vip);
    if (!puts.empty()) entries = view_->announcers.edit(puts);
    announcers_ = std::move(next);
  }
  const bool nodes_changed = nodes != view_->nodes;
  if (!force && changed_keys.empty() && changed_vips.empty() && !nodes_changed && !bgp_changed &&
      !probers_changed) {
    return false;
  }
  auto v = std::make_shared<View>();
  v->generation = view_->generation + 1;
  v->services = std::move(services);
  v->announcers = std::move(entries);
  v->nodes = std::move(nodes);
  v->previous = view_;
  v->changed_keys = std::move(changed_keys);
  v->changed_vips = std::move(changed_vips);
  v->nodes_changed = nodes_changed;
  v->bgp = bgp_changed ? bgp_ : view_->bgp;
  v->bgp_changed = bgp_changed;
  v->probers = probers_;
  v->probers_changed = probers_changed;
  view_ = std::move(v);
  return true;
}

}  // namespace flowlb::controller
