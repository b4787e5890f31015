#include "controller/k8s/kube_controller.h"

#include <cpprest/json.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <set>
#include <thread>
#include <tuple>

#include "controller/k8s/decode.h"
#include "controller/k8s/informer.h"

namespace flowlb::controller::k8s {

using web::json::value;

namespace {

std::string servicePath(const std::string& key) {
  const auto slash = key.find('/');
  return "/api/v1/namespaces/" + key.substr(0, slash) + "/services/" + key.substr(slash + 1);
}

// What flowlb wants a Service's status (and pool annotation) to say.
struct WantedStatus {
  std::vector<IpAddr> ips;
  std::string pool;
  std::string cond_status;  // "True" | "False"
  std::string reason;
  std::string message;
  bool operator==(const WantedStatus&) const = default;
};

const Condition* ourCondition(const ServiceObject& s) {
  for (const Condition& c : s.status.conditions) {
    if (c.type == kConditionType) return &c;
  }
  return nullptr;
}

bool statusSays(const ServiceObject& s, const WantedStatus& w) {
  const Condition* c = ourCondition(s);
  auto it = s.meta.annotations.find(kPoolAnnotation);
  const std::string pool = it == s.meta.annotations.end() ? "" : it->second;
  return s.status.ips == w.ips && c && c->status == w.cond_status && c->reason == w.reason &&
         c->message == w.message && pool == w.pool;
}

struct EventJob {
  std::string service_key;
  std::string uid;
  bool warning = true;
  std::string reason;
  std::string message;
  std::string name;  // existing Event to bump, or empty to create one
  int count = 1;
};

struct PoolStatus {
  uint64_t used = 0;
  uint64_t free = 0;
  std::string invalid;  // the unreadable address entries, or "" (condition flowlb.io/Valid)
  bool operator==(const PoolStatus&) const = default;
};

int64_t clampJson(uint64_t v) {
  return v > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(v);
}

}  // namespace

struct KubeController::Impl {
  KubeControllerOptions opt;
  ControllerTelemetry* telemetry;
  DesiredCallback on_desired;
  ApiClient api;
  std::unique_ptr<Informer<ServiceObject>> services;
  std::unique_ptr<Informer<EndpointSliceObject>> slices;
  std::unique_ptr<Informer<NodeEntry>> nodes;
  std::unique_ptr<Informer<PoolObject>> pools;
  std::unique_ptr<LeaderElector> elector;

  // Reconcile trigger.
  std::mutex mu;
  std::condition_variable cv;
  bool dirty = true;
  bool full_needed = true;
  std::set<std::string> changed_services;  // keys, since the last reconcile
  std::set<std::string> changed_slices;    // owning Service keys
  bool stopping = false;
  std::thread reconcile_thread;
  IncrementalReconciler reconciler{ReconcilerConfig()};  // reconcile thread only

  // Writes (guarded by wmu).
  std::mutex wmu;
  std::condition_variable wcv;
  std::map<std::string, WantedStatus> wanted;  // latest wish per Service key
  std::deque<std::string> status_queue;
  std::set<std::string> queued;                  // in status_queue
  std::set<std::string> inflight;                // being written
  std::map<std::string, ServiceObject> written;  // the object our last write returned
  std::deque<std::string> annotation_queue;      // the pool annotation, after statuses
  std::set<std::string> annotation_queued;
  std::deque<EventJob> event_queue;
  std::map<std::string, PoolStatus> pool_wanted;
  std::deque<std::string> pool_queue;
  std::map<std::string, PoolStatus> pool_written;
  std::vector<std::thread> writers;

  // Event deduplication (reconcile thread only): a problem is posted when
  // it appears, not at every reconcile while it lasts.
  struct EventRecord {
    std::string name;
    int count = 0;
  };
  std::map<std::string, std::set<std::string>> active_events;  // service -> event ids
  std::map<std::string, EventRecord> event_records;            // service|id -> Event

  Impl(KubeControllerOptions o, ControllerTelemetry* t, DesiredCallback cb)
      : opt(std::move(o)), telemetry(t), on_desired(std::move(cb)), api(opt.cluster, opt.api, t) {}

  bool leader() const { return !elector || elector->isLeader(); }

  void markFull() {
    {
      std::lock_guard<std::mutex> lock(mu);
      dirty = true;
      full_needed = true;
    }
    cv.notify_one();
  }

  InformerOptions informerOptions(const std::string& resource, const std::string& path) const {
    InformerOptions io;
    io.resource = resource;
    io.path = path;
    io.watch_timeout_min_s = opt.watch_timeout_min_s;
    io.watch_timeout_max_s = opt.watch_timeout_max_s;
    io.backoff_initial = opt.backoff_initial;
    io.backoff_max = opt.backoff_max;
    return io;
  }

  void start() {
    auto changed = [this](std::set<std::string>* into) {
      return [this, into](const std::string& key, const std::string& before,
                          const std::string& after) {
        {
          std::lock_guard<std::mutex> lock(mu);
          if (key.empty()) {
            full_needed = true;  // re-listed
          } else if (into == &changed_slices) {
            // The Service(s) the EndpointSlice belonged to and belongs to.
            if (!before.empty()) into->insert(before);
            if (!after.empty()) into->insert(after);
          } else if (into) {
            into->insert(key);
          } else {
            full_needed = true;
          }
          dirty = true;
        }
        cv.notify_one();
      };
    };
    services = std::make_unique<Informer<ServiceObject>>(
        &api, informerOptions("services", "/api/v1/services"), decodeService,
        [](const ServiceObject& s) { return s.meta.key(); }, nullptr, changed(&changed_services));
    slices = std::make_unique<Informer<EndpointSliceObject>>(
        &api, informerOptions("endpointslices", "/apis/discovery.k8s.io/v1/endpointslices"),
        decodeEndpointSlice, [](const EndpointSliceObject& e) { return e.meta.key(); },
        [](const EndpointSliceObject& e) { return e.meta.ns + "/" + e.service; },
        changed(&changed_slices));
    nodes = std::make_unique<Informer<NodeEntry>>(
        &api, informerOptions("nodes", "/api/v1/nodes"), decodeNode,
        [](const NodeEntry& n) { return n.node.name; }, nullptr, changed(nullptr));
    pools = std::make_unique<Informer<PoolObject>>(
        &api, informerOptions("ippools", "/apis/flowlb.io/v1alpha1/ippools"), decodePool,
        [](const PoolObject& p) { return p.pool.name; }, nullptr, changed(nullptr));
    services->start();
    slices->start();
    nodes->start();
    pools->start();
    if (opt.leader_elect) {
      elector = std::make_unique<LeaderElector>(&api, opt.leader, [this](bool is_leader) {
        if (telemetry) telemetry->leader(is_leader);
        if (!is_leader) dropWrites();
        markFull();  // a new leader writes everything that differs
      });
      elector->start();
    } else if (telemetry) {
      telemetry->leader(true);
    }
    for (int i = 0; i < std::max(1, opt.writers); ++i) {
      writers.emplace_back([this] { writeLoop(); });
    }
    reconcile_thread = std::thread([this] { reconcileLoop(); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stopping) return;
      stopping = true;
    }
    cv.notify_all();
    if (reconcile_thread.joinable()) reconcile_thread.join();
    if (elector) elector->stop();  // releases the Lease (needs the client)
    dropWrites();
    api.shutdown();  // ends watches and pending requests
    wcv.notify_all();
    for (auto& w : writers) w.join();
    writers.clear();
    services->stop();
    slices->stop();
    nodes->stop();
    pools->stop();
  }

  bool synced() const {
    return services && services->synced() && slices->synced() && nodes->synced() && pools->synced();
  }

  // A follower does not write; what was queued is dropped at once.
  void dropWrites() {
    std::lock_guard<std::mutex> lock(wmu);
    status_queue.clear();
    queued.clear();
    event_queue.clear();
    pool_queue.clear();
    annotation_queue.clear();
    annotation_queued.clear();
    pool_wanted.clear();
  }

  // ---- reconcile ---------------------------------------------------------

  void reconcileLoop() {
    reconciler = IncrementalReconciler(opt.reconciler);
    while (true) {
      bool full;
      std::set<std::string> svc_keys, slice_keys;
      {
        std::unique_lock<std::mutex> lock(mu);
        if (!cv.wait_for(lock, opt.resync, [this] { return dirty || stopping; })) {
          full_needed = true;  // periodic resync: retries failed writes
        }
        if (stopping) return;
      }
      if (opt.debounce.count() > 0) std::this_thread::sleep_for(opt.debounce);
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stopping) return;
        dirty = false;
        full = full_needed;
        full_needed = false;
        svc_keys.swap(changed_services);
        slice_keys.swap(changed_slices);
      }
      if (!synced()) {  // a partial view would release addresses
        std::lock_guard<std::mutex> lock(mu);
        full_needed = true;
        continue;
      }
      std::vector<std::string> touched;
      if (!full) full = !onlyEndpointsChanged(svc_keys, slice_keys, &touched);
      if (full) {
        reconcileOnce();
      } else if (!touched.empty()) {
        reconcileEndpoints(touched);
      }
    }
  }

  bool onlyEndpointsChanged(const std::set<std::string>& svc_keys,
                            const std::set<std::string>& slice_owners,
                            std::vector<std::string>* touched) {
    std::vector<std::optional<ServiceObject>> now;
    now.reserve(svc_keys.size());
    std::vector<ServiceChange> changes;
    for (const std::string& key : svc_keys) {
      now.push_back(services->get(key));
      bool pending;
      {
        std::lock_guard<std::mutex> lock(wmu);
        pending = queued.count(key) || inflight.count(key);
      }
      changes.push_back({key, nullptr, pending});
    }
    for (size_t i = 0; i < changes.size(); ++i) changes[i].now = now[i] ? &*now[i] : nullptr;
    ReconcilePlan plan = reconciler.plan(
        changes, std::vector<std::string>(slice_owners.begin(), slice_owners.end()), false);
    *touched = std::move(plan.endpoints_of);
    return !plan.full;
  }

  uint64_t currentVersion() const {
    return std::max({services->lastEventVersion(), slices->lastEventVersion(),
                     nodes->lastEventVersion(), pools->lastEventVersion()});
  }

  void reconcileEndpoints(const std::vector<std::string>& keys) {
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t version = currentVersion();
    std::vector<EndpointSliceObject> eps;
    for (const std::string& k : keys) {
      for (EndpointSliceObject& e : slices->byIndex(k)) eps.push_back(std::move(e));
    }
    const Reconciled& r = reconciler.endpointsChanged(keys, eps);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (on_desired) on_desired(r, version);
    if (telemetry) telemetry->reconciled(secs, r);
  }

  void reconcileOnce() {
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t version = currentVersion();
    std::vector<ServiceObject> svcs = services->list();
    std::vector<EndpointSliceObject> eps = slices->list();
    std::vector<NodeObject> ns;
    for (NodeEntry& n : nodes->list()) ns.push_back(std::move(n.node));
    std::vector<PoolObject> pool_objs = pools->list();
    std::vector<IpPool> ps;
    ps.reserve(pool_objs.size());
    for (const PoolObject& p : pool_objs) ps.push_back(p.pool);

    // What we wrote (or are writing) is the truth until the cache catches up:
    // it is how an address stays with its Service between our write and the
    // watch event that echoes it.
    {
      std::lock_guard<std::mutex> lock(wmu);
      for (ServiceObject& s : svcs) {
        const std::string key = s.meta.key();
        useNewerWrite(&s);
        if (queued.count(key) || inflight.count(key)) s.status.ips = wanted[key].ips;
      }
    }
    const Reconciled& r = reconciler.full(ps, svcs, eps, ns);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (on_desired) on_desired(r, version);
    if (telemetry) telemetry->reconciled(secs, r);
    spdlog::debug("event=reconciled services={} nodes={} seconds={:.4f}", r.services.size(),
                  r.nodes.size(), secs);
    if (leader()) queueWrites(r, svcs, pool_objs);
  }

  void queueWrites(const Reconciled& r, const std::vector<ServiceObject>& svcs,
                   const std::vector<PoolObject>& pool_objs) {
    std::map<std::string, const ServiceObject*> by_key;
    for (const ServiceObject& s : svcs) by_key[s.meta.key()] = &s;
    std::vector<EventJob> events;
    std::set<std::string> live;
    {
      std::lock_guard<std::mutex> lock(wmu);
      for (const ServiceOutcome& o : r.services) {
        const ServiceObject* s = by_key[o.key];
        if (!s) continue;
        live.insert(o.key);
        WantedStatus w{o.ips, o.satisfied ? o.pool : "", o.satisfied ? "True" : "False", o.reason,
                       o.message};
        const bool pending = queued.count(o.key) || inflight.count(o.key);
        if (pending ? wanted[o.key] == w : statusSays(*s, w)) continue;
        wanted[o.key] = w;
        if (!queued.count(o.key)) {
          queued.insert(o.key);
          status_queue.push_back(o.key);
        }
      }
      // Forget Services that are gone or no longer ours.
      for (auto it = written.begin(); it != written.end();) {
        it = live.count(it->first) ? std::next(it) : written.erase(it);
      }
      for (const auto& [name, usage] : r.pools) {
        std::string invalid;
        for (const std::string& w : usage.invalid) invalid += (invalid.empty() ? "" : "; ") + w;
        const PoolStatus want{usage.used, usage.free, invalid};
        auto w = pool_written.find(name);
        if (w != pool_written.end() && w->second == want) continue;
        bool cached_equal = false;
        for (const PoolObject& p : pool_objs) {
          if (p.pool.name == name)
            cached_equal = p.has_status && p.used == want.used && p.free == want.free &&
                           p.has_valid_condition && p.valid_message == want.invalid;
        }
        if (cached_equal) continue;
        if (pool_wanted.count(name) && pool_wanted[name] == want) continue;
        if (!pool_wanted.count(name)) pool_queue.push_back(name);
        pool_wanted[name] = want;
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const CreatedEvent& c : pending_event_names) {
        event_records[c.service_key + "|" + (c.warning ? "W|" : "N|") + c.reason + "|" + c.message]
            .name = c.name;
      }
      pending_event_names.clear();
    }
    // Events: post a problem when it appears (or comes back), not while it lasts.
    for (const ServiceOutcome& o : r.services) {
      const ServiceObject* s = by_key[o.key];
      if (!s) continue;
      std::set<std::string> now;
      for (const ServiceEvent& e : o.events) {
        const std::string id = (e.warning ? "W|" : "N|") + e.reason + "|" + e.message;
        now.insert(id);
        if (active_events[o.key].count(id)) continue;
        EventRecord& rec = event_records[o.key + "|" + id];
        events.push_back(
            {o.key, s->meta.uid, e.warning, e.reason, e.message, rec.name, ++rec.count});
      }
      active_events[o.key] = std::move(now);
    }
    for (auto it = active_events.begin(); it != active_events.end();) {
      it = live.count(it->first) ? std::next(it) : active_events.erase(it);
    }
    for (auto it = event_records.begin(); it != event_records.end();) {
      it = live.count(it->first.substr(0, it->first.find('|'))) ? std::next(it)
                                                                : event_records.erase(it);
    }
    {
      std::lock_guard<std::mutex> lock(wmu);
      for (EventJob& e : events) event_queue.push_back(std::move(e));
    }
    wcv.notify_all();
  }

  // ---- writes ------------------------------------------------------------

  void writeLoop() {
    while (true) {
      std::unique_lock<std::mutex> lock(wmu);
      wcv.wait(lock, [this] {
        return api.stopping() || !status_queue.empty() || !event_queue.empty() ||
               !pool_queue.empty() || !annotation_queue.empty();
      });
      if (api.stopping()) return;
      if (!status_queue.empty()) {
        const std::string key = status_queue.front();
        status_queue.pop_front();
        queued.erase(key);
        if (inflight.count(key)) {  // another writer has it; it will re-check
          queued.insert(key);
          status_queue.push_back(key);
          lock.unlock();
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
          continue;
        }
        inflight.insert(key);
        const WantedStatus w = wanted[key];
        lock.unlock();
        writeStatus(key, w);
        lock.lock();
        inflight.erase(key);
      } else if (!annotation_queue.empty()) {
        const std::string key = annotation_queue.front();
        annotation_queue.pop_front();
        annotation_queued.erase(key);
        lock.unlock();
        writeAnnotation(key);
      } else if (!event_queue.empty()) {
        EventJob e = std::move(event_queue.front());
        event_queue.pop_front();
        lock.unlock();
        postEvent(e);
      } else {
        const std::string name = pool_queue.front();
        pool_queue.pop_front();
        const PoolStatus want = pool_wanted[name];
        pool_wanted.erase(name);
        lock.unlock();
        writePoolStatus(name, want);
      }
    }
  }

  // Replaces a cached Service by what our last write returned, when that is
  // newer (the watch has not echoed it yet). Caller holds wmu.
  void useNewerWrite(ServiceObject* s) const {
    auto w = written.find(s->meta.key());
    if (w != written.end() && resourceVersionNumber(w->second.meta.resource_version) >
                                  resourceVersionNumber(s->meta.resource_version)) {
      *s = w->second;
    }
  }

  // The newest view of a Service: the cache, or what our last write returned.
  std::optional<ServiceObject> current(const std::string& key) {
    std::optional<ServiceObject> c = services->get(key);
    if (!c) return c;
    std::lock_guard<std::mutex> lock(wmu);
    useNewerWrite(&*c);
    return c;
  }

  value statusPatch(const ServiceObject& s, const WantedStatus& w) {
    value ingress = value::array();
    size_t i = 0;
    for (const IpAddr& ip : w.ips) {
      value e = value::object();
      e["ip"] = value::string(ip.toString());
      e["ipMode"] = value::string("VIP");
      ingress[i++] = e;
    }
    // Ours replaced (its transition time kept while its status holds),
    // everyone else's kept as they are.
    Condition mine{
        kConditionType,   w.cond_status, w.reason, w.message, rfc3339(std::time(nullptr)),
        s.meta.generation};
    std::vector<Condition> all;
    for (const Condition& c : s.status.conditions) {
      if (c.type != kConditionType) {
        all.push_back(c);
        continue;
      }
      if (c.status == w.cond_status && !c.last_transition.empty()) {
        mine.last_transition = c.last_transition;
      }
    }
    all.push_back(mine);
    value conds = value::array();
    for (size_t n = 0; n < all.size(); ++n) {
      const Condition& c = all[n];
      value v = value::object();
      v["type"] = value::string(c.type);
      v["status"] = value::string(c.status);
      v["reason"] = value::string(c.reason);
      v["message"] = value::string(c.message);
      v["lastTransitionTime"] = value::string(c.last_transition);
      if (c.observed_generation) v["observedGeneration"] = value::number(c.observed_generation);
      conds[n] = v;
    }
    value patch = value::object();
    patch["metadata"] = value::object();
    // The version we based this on: a concurrent change gets 409, not lost.
    patch["metadata"]["resourceVersion"] = value::string(s.meta.resource_version);
    patch["status"] = value::object();
    patch["status"]["loadBalancer"] = value::object();
    patch["status"]["loadBalancer"]["ingress"] = w.ips.empty() ? value::null() : ingress;
    patch["status"]["conditions"] = conds;
    return patch;
  }

  void rememberWritten(const std::string& body) {
    try {
      auto s = decodeService(value::parse(body));
      if (!s) return;
      std::lock_guard<std::mutex> lock(wmu);
      auto& slot = written[s->meta.key()];
      if (resourceVersionNumber(s->meta.resource_version) >=
          resourceVersionNumber(slot.meta.resource_version)) {
        slot = std::move(*s);
      }
    } catch (const std::exception&) {
    }
  }

  void writeStatus(const std::string& key, const WantedStatus& w) {
    Backoff backoff(std::chrono::milliseconds(100), std::chrono::milliseconds(5000));
    std::optional<ServiceObject> s = current(key);
    for (int attempt = 0; attempt < 6 && s; ++attempt) {
      if (!leader() || api.stopping()) return;
      if (!servedByUs(*s, opt.reconciler)) return;  // changed class meanwhile: not ours
      const bool status_ok = s->status.ips == w.ips && [&] {
        const Condition* c = ourCondition(*s);
        return c && c->status == w.cond_status && c->reason == w.reason && c->message == w.message;
      }();
      if (!status_ok) {
        const ApiResponse r =
            api.request("PATCH", servicePath(key) + "/status", statusPatch(*s, w).serialize(),
                        "application/merge-patch+json");
        if (r.code == 409) {
          if (telemetry) telemetry->statusWrite("conflict");
          const ApiResponse g = api.request("GET", servicePath(key));
          if (g.code == 404) return;
          if (g.ok()) {
            try {
              auto fresh = decodeService(value::parse(g.body));
              if (fresh) s = std::move(*fresh);
            } catch (const std::exception&) {
            }
          }
          continue;
        }
        if (r.code == 404) return;  // deleted meanwhile
        if (!r.ok()) {
          spdlog::warn("event=status_write_failed service={} code={} msg=\"{}\"", key, r.code,
                       r.error);
          if (telemetry) telemetry->statusWrite("failed");
          if (!r.retryable()) return;
          std::this_thread::sleep_for(
              std::max(backoff.next(),
                       std::chrono::milliseconds(static_cast<int64_t>(r.retry_after * 1000))));
          continue;
        }
        if (telemetry) telemetry->statusWrite("ok");
        rememberWritten(r.body);
        s = current(key);
        if (!s) return;
      }
      auto it = s->meta.annotations.find(kPoolAnnotation);
      const std::string have = it == s->meta.annotations.end() ? "" : it->second;
      if (have != w.pool) {  // after every pending status: addresses first
        std::lock_guard<std::mutex> lock(wmu);
        if (annotation_queued.insert(key).second) annotation_queue.push_back(key);
      }
      return;
    }
  }

  void writeAnnotation(const std::string& key) {
    Backoff backoff(std::chrono::milliseconds(100), std::chrono::milliseconds(5000));
    for (int attempt = 0; attempt < 4; ++attempt) {
      if (!leader() || api.stopping()) return;
      const std::optional<ServiceObject> s = current(key);
      if (!s || !servedByUs(*s, opt.reconciler)) return;
      std::string want;
      {
        std::lock_guard<std::mutex> lock(wmu);
        auto w = wanted.find(key);
        if (w == wanted.end()) return;
        want = w->second.pool;
      }
      auto it = s->meta.annotations.find(kPoolAnnotation);
      if ((it == s->meta.annotations.end() ? "" : it->second) == want) return;
      value patch = value::object();
      patch["metadata"] = value::object();
      patch["metadata"]["annotations"] = value::object();
      patch["metadata"]["annotations"][kPoolAnnotation] =
          want.empty() ? value::null() : value::string(want);
      const ApiResponse r =
          api.request("PATCH", servicePath(key), patch.serialize(), "application/merge-patch+json");
      if (r.ok()) {
        rememberWritten(r.body);
        return;
      }
      if (r.code == 404) return;
      spdlog::warn("event=annotation_write_failed service={} code={} msg=\"{}\"", key, r.code,
                   r.error);
      if (!r.retryable()) return;
      std::this_thread::sleep_for(backoff.next());
    }
  }

  void postEvent(const EventJob& e) {
    if (!leader()) return;
    const auto slash = e.service_key.find('/');
    const std::string ns = e.service_key.substr(0, slash);
    const std::string name = e.service_key.substr(slash + 1);
    const std::string now = rfc3339(std::time(nullptr));
    const std::string base = "/api/v1/namespaces/" + ns + "/events";
    if (!e.name.empty()) {  // the same problem again: count it on the same Event
      value patch = value::object();
      patch["count"] = value::number(e.count);
      patch["lastTimestamp"] = value::string(now);
      const ApiResponse r = api.request("PATCH", base + "/" + e.name, patch.serialize(),
                                        "application/merge-patch+json");
      if (r.ok()) {
        if (telemetry) telemetry->eventPosted(e.warning ? "Warning" : "Normal", e.reason);
        return;
      }
      // Expired (Events live an hour by default): create a new one.
    }
    value ev = value::object();
    ev["apiVersion"] = value::string("v1");
    ev["kind"] = value::string("Event");
    ev["metadata"] = value::object();
    ev["metadata"]["generateName"] = value::string(name + ".");
    ev["metadata"]["namespace"] = value::string(ns);
    ev["involvedObject"] = value::object();
    ev["involvedObject"]["apiVersion"] = value::string("v1");
    ev["involvedObject"]["kind"] = value::string("Service");
    ev["involvedObject"]["namespace"] = value::string(ns);
    ev["involvedObject"]["name"] = value::string(name);
    ev["involvedObject"]["uid"] = value::string(e.uid);
    ev["type"] = value::string(e.warning ? "Warning" : "Normal");
    ev["reason"] = value::string(e.reason);
    ev["message"] = value::string(e.message);
    ev["source"] = value::object();
    ev["source"]["component"] = value::string("flowlb-controller");
    ev["reportingComponent"] = value::string("flowlb.io/controller");
    ev["reportingInstance"] = value::string(opt.leader.identity);
    ev["firstTimestamp"] = value::string(now);
    ev["lastTimestamp"] = value::string(now);
    ev["count"] = value::number(e.count);
    const ApiResponse r = api.request("POST", base, ev.serialize());
    if (!r.ok()) {
      spdlog::warn("event=event_post_failed service={} reason={} code={} msg=\"{}\"", e.service_key,
                   e.reason, r.code, r.error);
      return;
    }
    if (telemetry) telemetry->eventPosted(e.warning ? "Warning" : "Normal", e.reason);
    try {
      const std::string created = value::parse(r.body).at("metadata").at("name").as_string();
      std::lock_guard<std::mutex> lock(mu);
      // The reconcile thread files the name, so a recurrence bumps this Event.
      pending_event_names.push_back({e.service_key, e.warning, e.reason, e.message, created});
    } catch (const std::exception&) {
    }
  }

  // The IPPool's flowlb.io/Valid condition: whether every address entry
  // could be read (those that could not are listed, and left out).
  static value poolConditions(const std::string& invalid) {
    value c = value::object();
    c["type"] = value::string("flowlb.io/Valid");
    c["status"] = value::string(invalid.empty() ? "True" : "False");
    c["reason"] = value::string(invalid.empty() ? "AddressesValid" : "InvalidAddresses");
    c["message"] = value::string(invalid.empty() ? "every address entry is valid" : invalid);
    c["lastTransitionTime"] = value::string(rfc3339(std::time(nullptr)));
    value list = value::array();
    list[0] = c;
    return list;
  }

  void writePoolStatus(const std::string& name, const PoolStatus& want) {
    if (!leader()) return;
    value patch = value::object();
    patch["status"] = value::object();
    patch["status"]["used"] = value::number(clampJson(want.used));
    patch["status"]["free"] = value::number(clampJson(want.free));
    patch["status"]["conditions"] = poolConditions(want.invalid);
    const ApiResponse r =
        api.request("PATCH", "/apis/flowlb.io/v1alpha1/ippools/" + name + "/status",
                    patch.serialize(), "application/merge-patch+json");
    if (!r.ok()) {
      spdlog::warn("event=pool_status_write_failed pool={} code={} msg=\"{}\"", name, r.code,
                   r.error);
      return;  // the next reconcile tries again
    }
    std::lock_guard<std::mutex> lock(wmu);
    pool_written[name] = want;
  }

  struct CreatedEvent {
    std::string service_key;
    bool warning;
    std::string reason, message, name;
  };
  std::vector<CreatedEvent> pending_event_names;  // guarded by mu
};

KubeController::KubeController(KubeControllerOptions options, ControllerTelemetry* telemetry,
                               DesiredCallback on_desired)
    : impl_(std::make_unique<Impl>(std::move(options), telemetry, std::move(on_desired))) {}

KubeController::~KubeController() {
  stop();
}

void KubeController::start() {
  impl_->start();
}

void KubeController::stop() {
  impl_->stop();
}

bool KubeController::synced() const {
  return impl_->synced();
}

bool KubeController::isLeader() const {
  return impl_->leader();
}

}  // namespace flowlb::controller::k8s
