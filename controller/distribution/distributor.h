// Distribution as a pure core: what every node runs, as a sequence of
// immutable views, and what each agent must be sent to get from the view it
// acknowledged to the current one. No threads, no gRPC, no protobuf: the
// transport (controller/grpc/) injects an encoder, holds a lock around this
// class and carries its answers.
//
// - A view has a generation, the VirtualServices every ready node runs
//   (each encoded once, when its content changes, and shared by every node
//   and every later view it is unchanged in), and who announces each VIP
//   (announcer_policy.h).
// - A new view, and so a new generation, is made only when something an
//   agent receives changes: a reconcile that changed services, or an
//   announcer that moved because an agent came, went or changed health. An
//   agent connecting or disconnecting without moving a VIP makes none.
// - update() gives one agent a FULL state (first on a stream, after a
//   rejection, or when it cannot do INCREMENTAL) or the INCREMENTAL upserts
//   and removals since the view it acknowledged.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "controller/distribution/announcer_policy.h"
#include "controller/distribution/shared_list.h"
#include "controller/reconciler/reconciler.h"

namespace flowlb::controller {

// One VirtualService as agents receive it, encoded by the transport once
// per content (in the compact form; with backend keys only if an agent that
// needs them asks).
class Entry {
 public:
  using Encoder = std::function<std::string(const DesiredService&, bool backend_keys)>;
  Entry(std::shared_ptr<const DesiredService> s, const Encoder& encode);
  const DesiredService& service() const { return *service_; }
  const std::shared_ptr<const DesiredService>& shared() const { return service_; }
  const std::string& key() const { return service_->key; }
  const std::string& encoded() const { return compact_; }
  const std::string& encodedWithBackendKeys() const;

 private:
  std::shared_ptr<const DesiredService> service_;
  std::string compact_;
  Encoder encode_;
  mutable std::once_flag keyed_once_;
  mutable std::string keyed_;
};

struct AnnouncerEntry {
  IpAddr vip;
  std::string node;  // "" none
  bool operator==(const AnnouncerEntry&) const = default;
};

struct EntryKey {
  const std::string& operator()(const std::shared_ptr<const Entry>& e) const { return e->key(); }
};
struct AnnouncerVip {
  const IpAddr& operator()(const AnnouncerEntry& a) const { return a.vip; }
};
using ServiceList = SharedList<std::shared_ptr<const Entry>, EntryKey>;
using AnnouncerList = SharedList<AnnouncerEntry, AnnouncerVip>;

struct View {
  uint64_t generation = 0;
  // Shared, chunk by chunk, with the views before it (shared_list.h).
  ServiceList services;                                   // sorted by key
  AnnouncerList announcers;                               // sorted by VIP
  std::shared_ptr<const std::vector<std::string>> nodes;  // ready nodes, sorted; others run nothing
  // What changed since `previous` (when it is still alive): service keys,
  // VIPs; whether the set of nodes changed.
  std::weak_ptr<const View> previous;
  std::vector<std::string> changed_keys;  // sorted
  std::vector<IpAddr> changed_vips;       // sorted
  bool nodes_changed = false;
  // BGP peers and advertisements (null: none configured), and whether they
  // changed since `previous`.
  std::shared_ptr<const BgpDesired> bgp;
  bool bgp_changed = false;
  // Who probes backends (DesiredState.health_probers): the agents with
  // CAPABILITY_HEALTH_CHECKS that run this view, sorted; and whether the
  // list changed since `previous`.
  std::shared_ptr<const std::vector<std::string>> probers;
  bool probers_changed = false;
  bool runs(const std::string& node) const;
};

// What one agent is sent.
struct NodeUpdate {
  bool full = false;
  uint64_t generation = 0;
  uint64_t base = 0;                          // INCREMENTAL: the generation it applies to
  std::vector<const Entry*> upserts;          // FULL: every service the node runs
  std::vector<std::string> removed;           // service keys
  std::vector<AnnouncerEntry> announcements;  // FULL: every VIP
  std::vector<IpAddr> removed_vips;
  // The BGP configuration to send (agents with CAPABILITY_BGP): always
  // with FULL, with INCREMENTAL when it changed for this node (then every
  // announcement is sent again too). `bgp` null: none (a node that runs
  // nothing has no controller-configured BGP sessions).
  bool bgp_changed = false;
  const BgpDesired* bgp = nullptr;
  // The prober list to send (agents with CAPABILITY_HEALTH_CHECKS): with
  // FULL, and with INCREMENTAL when it changed.
  bool probers_changed = false;
  const std::vector<std::string>* probers = nullptr;
  std::shared_ptr<const View> view;  // keeps the entries alive
  bool empty() const {
    return !full && upserts.empty() && removed.empty() && announcements.empty() &&
           removed_vips.empty() && !bgp_changed && !probers_changed;
  }
};

// `base`: the view the agent acknowledged (nullptr: it needs a FULL state).
NodeUpdate nodeUpdate(const std::shared_ptr<const View>& base,
                      const std::shared_ptr<const View>& current, const std::string& node);

struct DistributionOptions {
  // After start (or becoming leader), announcers stay where they were while
  // agents reconnect (announcer_policy.h).
  std::chrono::milliseconds settle{3000};
};

class Distributor {
 public:
  Distributor(Entry::Encoder encode, DistributionOptions options = {},
              Clock* clock = SystemClock::get());

  // A reconcile's result, compared whole (a lookup per service). True
  // when it made a new view.
  bool setDesired(const Reconciled& r);
  // Only what changed since the last setDesired() or patchDesired() (an
  // endpoint change): the work is the size of the patch, not of the
  // cluster; announcers are decided again only for the VIPs it lists.
  bool patchDesired(const DesiredDelta& d);
  // Agents that may announce: connected, healthy and L2-capable. True when
  // an announcer moved (a new view).
  bool setLive(const std::string& node, bool live);
  // Call when settleDeadline() has passed; true when an announcer moved.
  bool tick();
  std::optional<std::chrono::steady_clock::time_point> settleDeadline() const;
  // Starts settling again (leadership regained).
  void resettle();
  // Makes the current generation greater than `g` (an agent's last applied
  // generation, from before a controller restart): same content, new view.
  bool generationAbove(uint64_t g);
  // The health probers (sorted). True when they changed (a new view).
  bool setProbers(std::vector<std::string> nodes);

  std::shared_ptr<const View> view() const { return view_; }
  const AnnouncerMap& announcers() const { return announcers_; }
  const std::set<std::string>& live() const { return live_; }
  bool settling() const;

 private:
  // A new view from the current services and the announcers decided again;
  // none when neither changed (unless `force`).
  bool publish(ServiceList services, std::vector<std::string> changed_keys,
               std::shared_ptr<const std::vector<std::string>> nodes, bool force);

  Entry::Encoder encode_;
  DistributionOptions opt_;
  Clock* clock_;
  std::chrono::steady_clock::time_point settle_until_;
  std::shared_ptr<const View> view_;
  // Updated in place: a reconcile that changed one Service costs a lookup
  // per Service, not a new map of them all (issue 13: the controller's CPU
  // per endpoint change grew with the number of Services).
  struct Slot {
    std::shared_ptr<const Entry> entry;
    uint64_t seen = 0;  // the last setDesired() that listed it
  };
  std::unordered_map<std::string, Slot> by_key_;
  uint64_t pass_ = 0;
  std::vector<VipCandidates> vips_;
  std::set<std::string> live_;
  // Agents live at some point since settling began: one that is not live
  // any more was lost, and settling does not wait for it.
  std::set<std::string> seen_;
  AnnouncerMap announcers_;
  // Announcers are decided again only when what they depend on changed
  // (candidates, live agents, settling); otherwise the last answer stands.
  // stale_vips_: only these VIPs' candidates changed (a patch).
  bool announcers_stale_ = true;
  std::set<IpAddr> stale_vips_;
  bool decided_settling_ = true;
  std::shared_ptr<const BgpDesired> bgp_;  // the newest reconcile's
  std::shared_ptr<const std::vector<std::string>> probers_ =
      std::make_shared<const std::vector<std::string>>();
};

}  // namespace flowlb::controller
