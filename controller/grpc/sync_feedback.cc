// The housekeeper: Hello deadlines, leadership, the end of settling,
// health verdicts and probers, and the feedback passed to the reconcile loop.
#include <grpcpp/grpcpp.h>

#include "controller/grpc/bgp_report.h"
#include "controller/grpc/sync_server_impl.h"

namespace flowlb::controller {

void SyncServer::Impl::healthReport(const std::string& node, const Session* s, ProberHealth h) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = by_node.find(node);
  if (it == by_node.end() || it->second.get() != s) return;
  health->report(node, std::move(h));  // decided by the housekeeper (at most every 50 ms)
}

bool SyncServer::Impl::updateProbers() {
  // No Service has a health check: no list, so agents coming and going (a
  // DaemonSet rollout) change nothing any agent receives.
  std::vector<std::string> probers;
  const std::shared_ptr<const View> v = distributor->view();
  for (const std::string& node : prober_nodes) {  // sorted
    if (health->anyChecks() && v->runs(node)) probers.push_back(node);
  }
  health->setProbers(probers);
  return distributor->setProbers(std::move(probers));
}

bool SyncServer::Impl::decideHealth() {
  if (!health->dirty()) {
    health->decide();  // counts the reports as seen
    return false;
  }
  // The facts on Services may change with any decision (a backend left, a
  // port fails open), not only with a verdict; feedback is recomputed only
  // when they did (not on every endpoint change).
  const std::vector<HealthFact> before = health->facts();
  const bool decided = health->decide();
  if (health->facts() != before) feedback_dirty = true;
  if (!decided) return false;
  distributor->setDesired(health->desired());
  return true;
}

// every 50 ms by one thread for all streams.
void SyncServer::Impl::housekeep() {
  std::unique_lock<std::mutex> lock(mu);
  while (!stop_cv.wait_for(lock, std::chrono::milliseconds(50), [this] { return stopping; })) {
    const auto now = SteadyClock::now();
    const std::vector<std::shared_ptr<Session>> all = sessions;
    const bool leader = leaderNow();
    const bool lost = was_leader && !leader;
    if (leader && !was_leader) distributor->resettle();  // agents are coming back
    was_leader = leader;
    bool new_view = false;
    const bool settling = distributor->settling();
    if (was_settling && !settling) {  // announcers may now move to live agents
      distributor->tick();
      new_view = takeView();
    }
    if (was_settling != settling) feedback_dirty = true;  // announcers are known now
    if (decideHealth()) new_view = takeView() || new_view;
    was_settling = settling;
    refreshFeedback(lock);
    lock.unlock();
    uint64_t late = 0;
    for (const auto& s : all) {
      if (!s->helloDue(now)) continue;
      ++late;
      s->end(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no Hello in time"));
    }
    if (lost) {
      const std::string leader_address = opt.leader_address ? opt.leader_address() : "";
      for (const auto& s : all) s->notLeader(leader_address);
    }
    if (new_view) kickAll();
    lock.lock();
    counters.hello_timeouts += late;
    if (lost) counters.not_leader += all.size();
  }
}

// Caller holds `lock` (on mu); it is released while the sessions are asked
// for their reports and while the listener runs.
void SyncServer::Impl::refreshFeedback(std::unique_lock<std::mutex>& lock) {
  const auto now = SteadyClock::now();
  if (now - feedback_at >= std::chrono::seconds(10)) feedback_dirty = true;  // resync
  if (!feedback_dirty || (!feedback_listener && !bgp_listener)) return;
  feedback_dirty = false;
  feedback_at = now;
  const std::shared_ptr<const View> v = distributor->view();
  const std::set<std::string> live = distributor->live();
  const bool known = !distributor->settling();
  // Copies: onFeedback/onBgpStatus may replace them while they run unlocked.
  const FeedbackListener feedback_to = feedback_listener;
  const BgpStatusListener bgp_to = bgp_listener;
  std::vector<std::shared_ptr<Session>> agents;
  for (const auto& [node, s] : by_node) agents.push_back(s);
  lock.unlock();
  std::vector<AgentReport> reports;
  reports.reserve(agents.size());
  for (const auto& s : agents) reports.push_back(s->report());
  std::map<std::string, ServiceFeedback> now_fb = serviceFeedback(*v, live, known, reports);
  using Prints = std::shared_ptr<const std::map<std::string, MaglevPrint>>;
  std::vector<std::pair<std::string, std::pair<std::shared_ptr<const View>, Prints>>> prints;
  for (const auto& s : agents) prints.emplace_back(s->node(), s->prints());
  std::vector<AgentPrints> compared;
  for (const auto& [node, p] : prints) compared.push_back({node, p.first, p.second.get()});
  lock.lock();
  health->comparePrints(compared);
  for (HealthFact& f : health->facts()) {
    auto it = now_fb.find(f.service);
    if (it != now_fb.end()) it->second.health.push_back(std::move(f.event));
  }
  lock.unlock();
  uint64_t failing = 0;
  std::map<std::string, ServiceFeedback> changed_fb;
  for (auto& [key, f] : now_fb) {
    failing += !f.failed.empty();
    auto old = feedback.find(key);
    if (old == feedback.end() || !(old->second == f)) changed_fb.emplace(key, f);
  }
  feedback = std::move(now_fb);  // only this thread touches it
  if (!changed_fb.empty() && feedback_to) feedback_to(changed_fb);
  // Not while agents may still be coming back (after a start or a new
  // leadership): a status with half the nodes would be written, then fixed.
  if (bgp_to && known) bgp_to(bgpPeerSessions(*v, reports));
  lock.lock();
  counters.services_not_programmed = failing;
}

}  // namespace flowlb::controller
