#include "controller/grpc/sync_server.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/file.h"
#include "common/log_safe.h"
#include "controller/grpc/hello.h"
#include "controller/grpc/proto_encode.h"
#include "controller/grpc/sync_server_impl.h"
#include "controller/identity/peer_identity.h"

namespace flowlb::controller {
namespace {

// "ipv4:10.0.0.1:5555" / "ipv6:[fd00::1]:5555" -> the address.
std::string sourceOf(const std::string& peer) {
  std::string s = peer.substr(peer.find(':') + 1);
  if (!s.empty() && s[0] == '[') return s.substr(1, s.find(']') - 1);
  return s.substr(0, s.rfind(':'));
}

}  // namespace

grpc::ServerBidiReactor<pb::AgentMessage, pb::ControllerMessage>* SyncServer::Impl::Sync(
    grpc::CallbackServerContext* ctx) {
  const std::string source = sourceOf(ctx->peer());
  auto s = std::make_shared<Session>(shared_from_this(), ctx, source);
  if (!leaderNow()) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++counters.not_leader;
    }
    changed.notify_all();
    Session* raw = s.get();
    raw->refuse(std::move(s), grpc::Status(grpc::StatusCode::UNAVAILABLE, "not the leader"), true,
                opt.leader_address ? opt.leader_address() : "");
    return raw;
  }
  // With mutual TLS, a peer without a certificate from the agents' CA is
  // refused before anything is read from it (controller/identity/).
  if (grpc::Status st = admitPeer(mtls(), *ctx); !st.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++counters.hello_rejected;
    }
    changed.notify_all();
    Session* raw = s.get();
    raw->refuse(std::move(s), std::move(st), false, "");
    return raw;
  }
  bool refused = false, log = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    int& n = per_source[source];
    if (stopping || static_cast<int>(sessions.size()) >= opt.max_streams ||
        n >= opt.max_streams_per_source) {
      refused = true;
      ++counters.refused_streams;
      auto& last = refusal_logged[source];
      if (refusal_logged.size() > 1024) refusal_logged.clear();
      log = SteadyClock::now() - last > std::chrono::seconds(10);
      if (log) last = SteadyClock::now();
      if (n == 0) per_source.erase(source);
    } else {
      ++n;
      sessions.push_back(s);
    }
  }
  if (refused) {
    changed.notify_all();
    if (log) {
      spdlog::warn(
          "event=agent_refused reason=stream_limit source={} total_limit={} "
          "per_source_limit={}",
          logSafe(source, 64), opt.max_streams, opt.max_streams_per_source);
    }
    Session* raw = s.get();
    raw->refuse(std::move(s),
                grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many streams"), false, "");
    return raw;
  }
  s->begin(s);
  return s.get();
}

void SyncServer::Impl::kickAll() {
  std::vector<std::shared_ptr<Session>> all, joined;
  {
    std::lock_guard<std::mutex> lock(mu);
    all = sessions;
    for (const std::string& n : flow_joined) {
      auto it = by_node.find(n);
      if (it != by_node.end()) joined.push_back(it->second);
    }
    flow_joined.clear();
  }
  for (const auto& s : joined) {
    if (s->joinFlows()) flowSyncJoined(s);
  }
  for (const auto& s : all) s->kick();
}

void SyncServer::Impl::helloAccepted(const std::shared_ptr<Session>& s, uint64_t last_applied,
                                     bool live, bool probes) {
  std::shared_ptr<Session> replaced;
  bool new_view;
  const std::string node = s->node();
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = by_node.find(node);
    // The same node again (an agent restarted before its old stream died):
    // the new stream wins.
    if (it != by_node.end() && it->second != s) replaced = it->second;
    by_node[node] = s;
    if (probes) {
      prober_nodes.insert(node);
    } else {
      prober_nodes.erase(node);
    }
    feedback_dirty = true;
    distributor->generationAbove(last_applied);
    distributor->setLive(node, live);
    updateProbers();
    new_view = takeView();
  }
  changed.notify_all();
  if (replaced) replaced->end(grpc::Status(grpc::StatusCode::ABORTED, "a newer stream took over"));
  if (new_view) kickAll();
}

void SyncServer::Impl::liveChanged(const std::string& node, const Session* s, bool live) {
  bool new_view;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = by_node.find(node);
    if (it == by_node.end() || it->second.get() != s) return;
    distributor->setLive(node, live);
    new_view = takeView();
  }
  if (new_view) kickAll();
}

void SyncServer::Impl::ended(const std::shared_ptr<Session>& s) {
  bool new_view = false;
  const std::string node = s->node();
  const bool greeted = s->greeted();
  {
    std::lock_guard<std::mutex> lock(mu);
    sessions.erase(std::remove(sessions.begin(), sessions.end(), s), sessions.end());
    if (--per_source[s->source()] <= 0) per_source.erase(s->source());
    auto it = by_node.find(node);
    if (it != by_node.end() && it->second == s) {
      by_node.erase(it);
      feedback_dirty = true;
      distributor->setLive(node, false);  // its VIPs move to the remaining agents now
      health->forget(node);
      prober_nodes.erase(node);
      updateProbers();
      new_view = takeView();
    }
    if (!stopping && greeted) ++counters.stream_resets;
  }
  changed.notify_all();
  if (greeted) {
    const AgentStatus st = s->status();
    spdlog::warn("event=agent_disconnected node={} peer={} acked={}", node, logSafe(st.peer, 64),
                 st.acked_generation);
  }
  if (new_view) kickAll();
}

// Hello deadlines, leadership changes and the end of settling: checked

void SyncServer::onBgpStatus(BgpStatusListener listener) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->bgp_listener = std::move(listener);
  impl_->feedback_dirty = true;
}

void SyncServer::onFeedback(FeedbackListener listener) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->feedback_listener = std::move(listener);
  impl_->feedback_dirty = true;
}

Result<std::unique_ptr<SyncServer>> SyncServer::start(SyncServerOptions options,
                                                      std::function<bool()> is_leader) {
  std::unique_ptr<SyncServer> s(new SyncServer());
  s->impl_ = std::make_shared<Impl>();
  Impl& impl = *s->impl_;
  impl.opt = std::move(options);
  impl.is_leader = std::move(is_leader);
  impl.distributor = std::make_unique<Distributor>(encodeVirtualService, impl.opt.distribution);
  impl.health = std::make_unique<SyncHealth>(impl.opt.health_probers_per_backend);
  impl.flow_sync = std::make_unique<FlowSyncHub>(impl.opt.flow_sync);
  impl.view = impl.distributor->view();
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (impl.opt.plaintext) {
    creds = grpc::InsecureServerCredentials();
  } else {
    auto cert = impl.opt.tls_cert_pem.empty() ? readFile(impl.opt.tls_cert)
                                              : Result<std::string>(impl.opt.tls_cert_pem);
    auto key = impl.opt.tls_key_pem.empty() ? readFile(impl.opt.tls_key)
                                            : Result<std::string>(impl.opt.tls_key_pem);
    if (!cert) return cert.status();
    if (!key) return key.status();
    grpc::SslServerCredentialsOptions o;
    o.pem_key_cert_pairs.push_back({*key, *cert});
    if (!impl.opt.tls_ca.empty() || !impl.opt.tls_ca_pem.empty()) {
      auto ca = impl.opt.tls_ca_pem.empty() ? readFile(impl.opt.tls_ca)
                                            : Result<std::string>(impl.opt.tls_ca_pem);
      if (!ca) return ca.status();
      o.pem_root_certs = *ca;
      // Mutual TLS: an agent without a certificate from this CA is refused.
      o.client_certificate_request =
          impl.opt.additional_services.empty()
              ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
              : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;  // Sync checks (admitPeer)
    }
    creds = grpc::SslServerCredentials(o);
  }
  grpc::ServerBuilder b;
  b.AddListeningPort(impl.opt.address, creds, &impl.bound_port);
  b.RegisterService(&impl);
  for (grpc::Service* extra : impl.opt.additional_services) b.RegisterService(extra);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                       static_cast<int>(impl.opt.keepalive_time.count()));
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                       static_cast<int>(impl.opt.keepalive_timeout.count()));
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Agents ping as often as we do; do not punish them for it.
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 50);
  b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  b.SetMaxSendMessageSize(256 << 20);
  b.SetMaxReceiveMessageSize(16 << 20);  // an Ack with an error per service
  impl.server = b.BuildAndStart();
  if (!impl.server || impl.bound_port == 0) {
    return Status::error("cannot serve gRPC on " + impl.opt.address);
  }
  impl.was_leader = impl.leaderNow();
  impl.housekeeper = std::thread([p = s->impl_.get()] { p->housekeep(); });
  spdlog::info("event=grpc_listening address={} port={} tls={} mtls={}", impl.opt.address,
               impl.bound_port, !impl.opt.plaintext,
               !impl.opt.tls_ca.empty() || !impl.opt.tls_ca_pem.empty());
  return s;
}

SyncServer::~SyncServer() {
  if (!impl_) return;
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    all = impl_->sessions;
  }
  impl_->changed.notify_all();
  impl_->stop_cv.notify_all();
  if (impl_->housekeeper.joinable()) impl_->housekeeper.join();
  for (const auto& s : all) s->end(grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down"));
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

void SyncServer::publish(const Reconciled& r) {
  bool new_view;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    // An endpoint change is a patch of what the distribution holds: the
    // work is the change's, not the cluster's.
    if (impl_->health->setReconciled(r)) {
      impl_->distributor->patchDesired(impl_->health->patch());
    } else {
      impl_->distributor->setDesired(impl_->health->desired());
    }
    impl_->updateProbers();  // the nodes that run it may have changed
    new_view = impl_->takeView();
  }
  if (new_view) impl_->kickAll();
}

std::vector<AgentStatus> SyncServer::agents() const {
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (const auto& [node, s] : impl_->by_node) all.push_back(s);
  }
  std::vector<AgentStatus> out;
  for (const auto& s : all) out.push_back(s->status());
  return out;
}

uint64_t SyncServer::generation() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->distributor->view()->generation;
}

uint64_t SyncServer::streamResets() const {
  return counters().stream_resets;
}

SyncCounters SyncServer::counters() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  SyncCounters c = impl_->counters;
  c.bytes_sent = impl_->bytes_sent;
  c.states_full = impl_->states_full;
  c.states_incremental = impl_->states_incremental;
  c.backends_unhealthy = impl_->health->unhealthyPerService();
  c.health_down = impl_->health->transitionsDown();
  c.health_up = impl_->health->transitionsUp();
  c.health_statuses = impl_->health->decidedStatuses();
  c.maglev_mismatches = impl_->health->mismatches();
  c.maglev_agreeing = impl_->health->agreeing();
  c.health_reports = impl_->health->reportsReceived();
  c.health_reports_decided = impl_->health->reportsDecided();
  c.flow_sync = impl_->flow_sync->counters();
  return c;
}

AnnouncerMap SyncServer::announcers() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->distributor->announcers();
}

int SyncServer::port() const {
  return impl_->bound_port;
}

bool SyncServer::waitFor(const std::function<bool(const std::vector<AgentStatus>&)>& done,
                         std::chrono::milliseconds timeout) const {
  return waitUntil([&] { return done(agents()); }, timeout);
}

bool SyncServer::waitUntil(const std::function<bool()>& done,
                           std::chrono::milliseconds timeout) const {
  const auto deadline = SteadyClock::now() + timeout;
  while (!done()) {
    // done() takes the lock itself: it must not be held here (a wait that
    // timed out deadlocked on it).
    if (SteadyClock::now() >= deadline) return false;
    std::unique_lock<std::mutex> lock(impl_->mu);
    // Woken by every connect, disconnect, refusal and acknowledgement; the
    // short bound only covers a notification between the check and the wait.
    impl_->changed.wait_for(lock, std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace flowlb::controller
