#include "agent/health/prober.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <thread>

#include "agent/health/probe.h"
#include "common/waker.h"

namespace flowlb::agent::health {

using Clock = std::chrono::steady_clock;

struct Prober::Impl {
  ProberOptions opt;
  Waker waker;
  SslCtxPtr tls;
  std::thread thread;

  mutable std::mutex mu;  // guards the fields down to `stopping`
  std::optional<std::vector<ProbeTarget>> next_targets;
  std::map<TargetKey, TargetStatus> published;
  ProberCounters counters;
  bool stopping = false;

  // The prober thread's own.
  struct Entry {
    ProbeTarget target;
    HealthThreshold threshold;
    Clock::time_point due;
    Clock::time_point started;
    std::unique_ptr<Probe> probe;  // in flight
  };
  std::map<TargetKey, Entry> entries;
  std::vector<ProbeTarget> current;
  size_t in_flight = 0;
  uint16_t dns_id = 1;
  std::optional<Clock::time_point> notify_at;  // a batch of changes to announce

  void retarget(std::vector<ProbeTarget> targets, Clock::time_point now) {
    const TargetDiff d = diffTargets(current, targets);
    bool changed = false;
    for (const TargetKey& k : d.removed) {
      auto it = entries.find(k);
      if (it == entries.end()) continue;
      if (it->second.probe) --in_flight;
      entries.erase(it);
      changed = true;
    }
    for (const ProbeTarget& t : d.added) {
      Entry e{t, HealthThreshold(t.check.healthy_threshold, t.check.unhealthy_threshold),
              now + std::chrono::milliseconds(staggerMs(t.key, t.check.interval_ms)), now, nullptr};
      entries.insert_or_assign(t.key, std::move(e));
      changed = true;
    }
    current = std::move(targets);
    std::lock_guard<std::mutex> lock(mu);
    for (const TargetKey& k : d.removed) published.erase(k);
    for (const ProbeTarget& t : d.added) published[t.key] = TargetStatus{t.key, {}, {}};
    counters.targets = entries.size();
    if (changed && !notify_at) notify_at = now;  // the set itself changed: report it
  }

  void completed(Entry& e, Clock::time_point now) {
    const bool passed = e.probe->passed();
    const std::string detail = e.probe->detail();
    e.probe.reset();
    --in_flight;
    record(e, passed, detail, now);
  }

  void timedOut(Entry& e, Clock::time_point now) {
    e.probe.reset();  // closes the socket
    --in_flight;
    record(e, false, "timeout after " + std::to_string(e.target.check.timeout_ms) + " ms", now);
  }

  void record(Entry& e, bool passed, const std::string& detail, Clock::time_point now) {
    const bool changed = e.threshold.record(passed, detail);
    {
      std::lock_guard<std::mutex> lock(mu);
      (passed ? counters.passed : counters.failed) += 1;
      TargetStatus& s = published[e.target.key];
      s.key = e.target.key;
      s.status = e.threshold.status();
      s.detail = e.threshold.detail();
    }
    if (changed) {
      spdlog::info("event=backend_health service=\"{}\" backend={} status={} detail=\"{}\"",
                   e.target.key.service, e.target.key.backend,
                   healthStatusName(e.threshold.status()), e.threshold.detail());
      if (!notify_at) notify_at = now + opt.batch;
    }
  }

  void run() {
    // A TLS write (OpenSSL's write(2)) to a backend that reset the connection
    // must fail with EPIPE, not kill the agent: SIGPIPE is synchronous, so
    // blocking it in this thread is enough.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    std::vector<pollfd> fds;
    std::vector<Entry*> polled;
    while (true) {
      Clock::time_point now = Clock::now();
      {
        std::optional<std::vector<ProbeTarget>> t;
        {
          std::lock_guard<std::mutex> lock(mu);
          if (stopping) return;
          t = std::move(next_targets);
          next_targets.reset();
        }
        if (t) retarget(std::move(*t), now);
      }
      // Start what is due while there is room (the rest wait their turn).
      Clock::time_point wake = now + std::chrono::seconds(1);
      for (auto& [key, e] : entries) {
        if (!e.probe && now >= e.due && in_flight < opt.max_in_flight) {
          e.started = now;
          e.due = now + std::chrono::milliseconds(e.target.check.interval_ms);
          e.probe = std::make_unique<Probe>(e.target, tls.get(), opt.port_ceiling, dns_id++);
          ++in_flight;
          if (e.probe->done()) completed(e, now);
        }
        if (e.probe) {
          wake = std::min(wake, e.started + std::chrono::milliseconds(e.target.check.timeout_ms));
        } else if (now < e.due) {  // due but no room: a probe ending wakes the loop
          wake = std::min(wake, e.due);
        }
      }
      if (notify_at) wake = std::min(wake, *notify_at);
      fds.clear();
      polled.clear();
      fds.push_back({waker.fd(), POLLIN, 0});
      for (auto& [key, e] : entries) {
        if (!e.probe) continue;
        fds.push_back({e.probe->fd(), e.probe->events(), 0});
        polled.push_back(&e);
      }
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(wake - Clock::now()).count();
      ::poll(fds.data(), fds.size(), static_cast<int>(std::clamp<int64_t>(ms, 0, 1000)));
      waker.drain();
      now = Clock::now();
      for (size_t i = 0; i < polled.size(); ++i) {
        Entry& e = *polled[i];
        if (fds[i + 1].revents) {
          e.probe->advance();
          if (e.probe->done()) {
            completed(e, now);
            continue;
          }
        }
        const auto limit = std::chrono::milliseconds(e.target.check.timeout_ms);
        if (now - e.started >= limit) {
          timedOut(e, now);
        }
      }
      if (notify_at && now >= *notify_at) {
        notify_at.reset();
        if (opt.on_change) opt.on_change();
      }
    }
  }
};

Result<std::unique_ptr<Prober>> Prober::start(ProberOptions options) {
  auto w = Waker::create();
  if (!w) return w.status();
  std::unique_ptr<Prober> p(new Prober());
  p->impl_ =
      std::unique_ptr<Impl>(new Impl{std::move(options), std::move(*w), makeProbeSslContext()});
  if (!p->impl_->tls) return Status::error("health checks: cannot create a TLS context");
  Impl* impl = p->impl_.get();
  impl->thread = std::thread([impl] { impl->run(); });
  return p;
}

Prober::~Prober() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->waker.wake();
  if (impl_->thread.joinable()) impl_->thread.join();
}

size_t Prober::setTargets(const DesiredState& desired) {
  TargetSet set = probeTargets(desired, impl_->opt.node, impl_->opt.max_targets);
  if (set.refused > 0) {
    spdlog::warn(
        "event=health_targets_refused reason=max_targets refused={} limit={} msg=\"more backends "
        "to probe than --health-max-targets; these are not probed (and count as unknown)\"",
        set.refused, impl_->opt.max_targets);
  }
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->counters.refused = set.refused;
    impl_->next_targets = std::move(set.targets);
  }
  impl_->waker.wake();
  return set.refused;
}

std::vector<TargetStatus> Prober::statuses() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<TargetStatus> out;
  out.reserve(impl_->published.size());
  for (const auto& [k, s] : impl_->published) out.push_back(s);
  return out;
}

std::map<TargetKey, HealthStatus> Prober::verdicts() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::map<TargetKey, HealthStatus> out;
  for (const auto& [k, s] : impl_->published) out.emplace(k, s.status);
  return out;
}

ProberCounters Prober::counters() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->counters;
}

}  // namespace flowlb::agent::health
