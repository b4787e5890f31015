#include "controller/loop/reconcile_loop.h"

#include <spdlog/spdlog.h>

namespace flowlb::controller {

ReconcileLoop::ReconcileLoop(ReconcileLoopOptions options, ObjectSource* source, StatusSink* status,
                             EventRecorder* events, Published published, LoopTelemetry* telemetry,
                             Clock* clock)
    : opt_(std::move(options)),
      source_(source),
      status_(status),
      events_(events),
      published_(std::move(published)),
      telemetry_(telemetry),
      clock_(clock),
      reconciler_(opt_.reconciler) {
  pending_.full = true;  // the first pass is a full one
}

ReconcileLoop::~ReconcileLoop() {
  stop();
}

void ReconcileLoop::serviceChanged(const std::string& key) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.services.insert(key);
  }
  cv_.notify_one();
}

void ReconcileLoop::slicesChanged(const std::string& service_key) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.slice_owners.insert(service_key);
  }
  cv_.notify_one();
}

void ReconcileLoop::everythingChanged() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.full = true;
  }
  cv_.notify_one();
}

void ReconcileLoop::feedback(const std::map<std::string, ServiceFeedback>& changed) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, f] : changed) {
      feedback_[key] = f;
      pending_.feedback.insert(key);
    }
  }
  cv_.notify_one();
}

void ReconcileLoop::start() {
  thread_ = std::thread([this] { run(); });
}

void ReconcileLoop::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ReconcileLoop::run() {
  if (opt_.watchdog) {
    // It wakes at least every resync; a pass longer than a minute is a hang.
    opt_.watchdog->expect("reconcile-loop", opt_.resync + std::chrono::seconds(60));
  }
  while (true) {
    if (opt_.watchdog) opt_.watchdog->beat("reconcile-loop");
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_for(lock, opt_.resync, [this] { return pending_.any() || stopping_; })) {
        pending_.full = true;  // periodic resync: retries what failed
      }
      if (stopping_) return;
      // Let a burst of changes settle into one pass. Endpoint changes that
      // find the loop idle (no pass for a debounce) go at once: their pass
      // is incremental and costs the change, and what follows them in a
      // burst waits for the next pass (issue 13: the debounce was 10 of the
      // ~40 ms from an endpoint change to every agent's ack).
      const bool endpoints_only =
          !pending_.full && pending_.services.empty() && pending_.feedback.empty();
      const bool idle = clock_->now() - last_pass_ >= opt_.debounce;
      if (opt_.debounce.count() > 0 && !(endpoints_only && idle) &&
          cv_.wait_for(lock, opt_.debounce, [this] { return stopping_; })) {
        return;
      }
    }
    runOnce();
  }
}

bool ReconcileLoop::runOnce() {
  Pending p;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!pending_.any()) return false;
    if (!source_->synced()) {
      pending_.full = true;  // the source says when it is (everythingChanged)
      return false;
    }
    std::swap(p, pending_);
  }
  pass(std::move(p));
  last_pass_ = clock_->now();
  return true;
}

namespace {

// Reads a peer's TCP-MD5 password from the Secret its passwordSecretRef
// names; "" when it is there, else why not (the peer is then not sent:
// without its password the router would refuse every session anyway).
std::string resolvePassword(const ObjectSource& source, BgpPeerSpec* p) {
  if (!p->password_secret) return "";
  const SecretKeyRef& ref = *p->password_secret;
  const std::optional<SecretObject> s = source.secret(ref.name);
  if (!s) {
    return "spec.passwordSecretRef: no Secret " + ref.name +
           " of type kubernetes.io/basic-auth in the controller's namespace";
  }
  auto it = s->data.find(ref.key);
  if (it == s->data.end() || it->second.empty()) {
    return "spec.passwordSecretRef: Secret " + ref.name + " has no key " + ref.key;
  }
  if (it->second.size() > kMaxBgpPasswordBytes) {
    return "spec.passwordSecretRef: the password in Secret " + ref.name + " is longer than " +
           std::to_string(kMaxBgpPasswordBytes) + " bytes (TCP-MD5's limit)";
  }
  p->password = it->second;
  return "";
}

}  // namespace

// The BGP plan of a full reconcile's result; null when no BGP object
// exists. A peer whose password cannot be read is left out, and said so
// (log, Event on the BGPPeer).
std::shared_ptr<const BgpDesired> ReconcileLoop::bgpPlan(const std::vector<IpPool>& pools,
                                                         const std::vector<NodeObject>& nodes,
                                                         const Reconciled& r) {
  std::vector<BgpPeerSpec> all = source_->bgpPeers();
  std::vector<BgpAdvertisementSpec> ads = source_->bgpAdvertisements();
  std::vector<BgpPeerSpec> peers;
  std::map<std::string, std::string> refused;
  for (BgpPeerSpec& p : all) {
    const std::string problem = resolvePassword(*source_, &p);
    std::vector<ServiceEvent> facts;
    if (!problem.empty()) {
      auto said = bgp_refused_.find(p.name);
      if (said == bgp_refused_.end() || said->second != problem) {
        spdlog::error("event=bgp_peer_refused peer={} reason=password msg=\"{}\"", p.name, problem);
      }
      refused[p.name] = problem;
      facts.push_back({true, "InvalidPassword", problem});
    }
    if (events_) events_->observe(bgpPeerEventKey(p.name), p.uid, "spec", facts);
    if (problem.empty()) peers.push_back(std::move(p));
  }
  bgp_refused_ = std::move(refused);
  if (peers.empty() && ads.empty()) return nullptr;
  std::vector<BgpPool> bp;
  for (const IpPool& p : pools) bp.push_back({p.name, p.labels});
  std::vector<BgpNode> bn;
  for (const NodeObject& n : nodes) bn.push_back({n.name, n.labels});
  std::vector<BgpVip> vips;
  for (const ServiceOutcome& o : r.services) {
    for (const IpAddr& ip : o.ips) vips.push_back({ip, o.pool});
  }
  return std::make_shared<const BgpDesired>(planBgp(peers, ads, bp, bn, vips));
}

void ReconcileLoop::pass(Pending p) {
  const auto t0 = clock_->now();
  const uint64_t version = source_->version();
  bool reconciled = false;
  bool full = p.full;
  std::vector<std::string> touched;
  if (!full && (!p.services.empty() || !p.slice_owners.empty())) {
    // Read each changed Service once, with our own writes laid over it.
    std::vector<ServicePtr> now;
    now.reserve(p.services.size());
    std::vector<ServiceChange> changes;
    for (const std::string& key : p.services) {
      std::optional<ServiceObject> s = source_->service(key);
      now.push_back(s ? std::make_shared<const ServiceObject>(std::move(*s)) : nullptr);
      if (now.back()) status_->overlay(&now.back());
      changes.push_back({key, now.back().get(), status_->pending(key)});
    }
    ReconcilePlan plan = reconciler_.plan(
        changes, std::vector<std::string>(p.slice_owners.begin(), p.slice_owners.end()), false);
    full = plan.full;
    touched = std::move(plan.endpoints_of);
  }
  if (full) {
    std::vector<ServicePtr> services = source_->services();
    for (ServicePtr& s : services) status_->overlay(&s);
    const std::vector<IpPool> pools = source_->pools();
    const std::vector<NodeObject> nodes = source_->nodes();
    const Reconciled& done = reconciler_.full(pools, services, source_->slices(), nodes);
    reconciler_.setBgp(bgpPlan(pools, nodes, done));
    uids_.clear();
    for (const ServicePtr& s : services) {
      if (reconciler_.serves(s->meta.key())) uids_[s->meta.key()] = s->meta.uid;
    }
    reconciled = true;
  } else if (!touched.empty()) {
    std::vector<EndpointSliceObject> slices;
    for (const std::string& key : touched) {
      for (EndpointSliceObject& e : source_->slicesOf(key)) slices.push_back(std::move(e));
    }
    reconciler_.endpointsChanged(touched, slices);
    reconciled = true;
  }
  const Reconciled& r = reconciler_.result();
  if (reconciled) {
    if (published_) published_(r, version);
    if (telemetry_) {
      telemetry_->reconciled(std::chrono::duration<double>(clock_->now() - t0).count(), r, full);
    }
  }
  if (full) {
    status_->reconciled(r);
    publishStatuses(nullptr);
    observeEvents(nullptr);
    return;
  }
  // Endpoints cannot change an allocation: only Events (and what the
  // agents said since) need looking at.
  std::vector<std::string> keys(p.feedback.begin(), p.feedback.end());
  if (!keys.empty()) publishStatuses(&keys);
  keys.insert(keys.end(), touched.begin(), touched.end());
  if (!keys.empty()) observeEvents(&keys);
}

void ReconcileLoop::publishStatuses(const std::vector<std::string>* only) {
  const Reconciled& r = reconciler_.result();
  std::map<std::string, WantedStatus> wanted;
  std::lock_guard<std::mutex> lock(mu_);  // feedback_
  auto fb = [this](const std::string& key) -> const ServiceFeedback* {
    auto it = feedback_.find(key);
    return it == feedback_.end() ? nullptr : &it->second;
  };
  if (!only) {
    for (const ServiceOutcome& o : r.services) wanted[o.key] = wantedFor(o, fb(o.key));
    for (const LeavingService& l : r.leaving) wanted[l.key] = wantedForLeaving(l);
    // Feedback about Services that are gone is forgotten.
    for (auto it = feedback_.begin(); it != feedback_.end();) {
      it = reconciler_.serves(it->first) ? std::next(it) : feedback_.erase(it);
    }
    status_->want(wanted, true);
    return;
  }
  for (const std::string& key : *only) {
    if (const ServiceOutcome* o = reconciler_.outcomeOf(key)) wanted[key] = wantedFor(*o, fb(key));
  }
  if (!wanted.empty()) status_->want(wanted, false);
}

void ReconcileLoop::observeEvents(const std::vector<std::string>* only) {
  if (!events_) return;
  const Reconciled& r = reconciler_.result();
  auto observe = [this](const ServiceOutcome& o) {
    auto uid = uids_.find(o.key);
    const std::string u = uid == uids_.end() ? "" : uid->second;
    events_->observe(o.key, u, "reconcile", o.events);
    ServiceFeedback f;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = feedback_.find(o.key);
      if (it == feedback_.end()) return;
      f = it->second;
    }
    events_->observe(o.key, u, "announce", announceEvents(f));
    events_->observe(o.key, u, "agents", agentEvents(f));
    events_->observe(o.key, u, "health", f.health);
  };
  if (!only) {
    std::set<std::string> live;
    for (const ServiceOutcome& o : r.services) {
      observe(o);
      live.insert(o.key);
    }
    events_->retain(live);
    return;
  }
  for (const std::string& key : *only) {
    if (const ServiceOutcome* o = reconciler_.outcomeOf(key)) observe(*o);
  }
}

}  // namespace flowlb::controller
