#include "controller/grpc/sync_server.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "common/file.h"
#include "controller/identity/peer_identity.h"
#include "flowlb/v1/sync.grpc.pb.h"

namespace flowlb::controller {
namespace {

namespace pb = flowlb::v1;

void setAddress(const IpAddr& a, pb::IpAddress* out) {
  if (a.isV4()) {
    out->set_addr(std::string(reinterpret_cast<const char*>(a.v4()), 4));
  } else {
    out->set_addr(std::string(reinterpret_cast<const char*>(a.bytes.data()), 16));
  }
}

std::string backendKey(const DesiredBackend& b) {
  return (b.addr.isV4() ? b.addr.toString() : "[" + b.addr.toString() + "]") + ":" +
         std::to_string(b.port);
}

struct Session {
  std::string node;
  std::string peer;
  grpc::ServerContext* ctx = nullptr;
  bool alive = true;    // guarded by Impl::mu
  bool healthy = true;  // the agent's last Report
  uint64_t sent = 0;
  uint64_t acked = 0;
  std::string last_error;
  std::chrono::steady_clock::time_point since = std::chrono::steady_clock::now();
};

}  // namespace

struct SyncServer::Impl final : public pb::FlowlbControl::Service {
  SyncServerOptions opt;
  std::function<bool()> is_leader;
  std::unique_ptr<grpc::Server> server;
  int bound_port = 0;

  mutable std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  uint64_t generation = 1;
  uint64_t resets = 0;
  std::shared_ptr<const std::map<std::string, NodeDesiredState>> state =
      std::make_shared<const std::map<std::string, NodeDesiredState>>();
  std::list<std::shared_ptr<Session>> sessions;

  // Connected agents' nodes (guarded by mu).
  std::set<std::string> connectedNodes() const {
    std::set<std::string> out;
    for (const auto& s : sessions) {
      if (s->alive && s->healthy) out.insert(s->node);
    }
    return out;
  }

  // Who announces each VIP, for the current generation (guarded by mu). An
  // announcer keeps its VIPs while it stays connected and healthy: moving a
  // VIP breaks the NAT flows through its node, so it moves only when it must.
  // A VIP without one gets the rendezvous choice among the live candidates.
  std::shared_ptr<const std::map<IpAddr, std::string>> announcers =
      std::make_shared<const std::map<IpAddr, std::string>>();
  uint64_t announcers_generation = 0;

  void refreshAnnouncers() {
    if (announcers_generation == generation) return;
    const std::set<std::string> live = connectedNodes();
    auto next = std::make_shared<std::map<IpAddr, std::string>>();
    for (const auto& [node, ns] : *state) {
      for (const auto& dp : ns.services) {
        if (next->count(dp->vip)) continue;
        std::vector<std::string> candidates;
        for (const std::string& c : dp->announce_candidates) {
          if (live.count(c)) candidates.push_back(c);
        }
        auto prev = announcers->find(dp->vip);
        if (prev != announcers->end() &&
            std::find(candidates.begin(), candidates.end(), prev->second) != candidates.end()) {
          (*next)[dp->vip] = prev->second;
        } else {
          (*next)[dp->vip] = chooseAnnouncer(dp->vip, candidates);
        }
      }
    }
    announcers = std::move(next);
    announcers_generation = generation;
  }

  pb::ControllerMessage build(const std::string& node, uint64_t gen,
                              const std::map<std::string, NodeDesiredState>& st,
                              const std::map<IpAddr, std::string>& announcer_map) {
    pb::ControllerMessage msg;
    pb::DesiredState* ds = msg.mutable_desired_state();
    ds->set_generation(gen);
    ds->set_kind(pb::DESIRED_STATE_KIND_FULL);
    auto it = st.find(node);
    if (it == st.end()) return msg;  // not a ready Node: nothing to serve
    std::set<IpAddr> vips;
    for (const auto& dp : it->second.services) {
      const DesiredService& d = *dp;
      pb::VirtualService* vs = ds->add_services();
      vs->set_key(d.key);
      setAddress(d.vip, vs->mutable_vip());
      vs->set_port(d.port);
      vs->set_protocol(d.proto == 17    ? pb::PROTOCOL_UDP
                       : d.proto == 132 ? pb::PROTOCOL_SCTP
                                        : pb::PROTOCOL_TCP);
      vs->set_forwarding_mode(d.mode == ForwardingMode::kDsr ? pb::FORWARDING_MODE_DSR
                                                             : pb::FORWARDING_MODE_NAT);
      vs->set_external_traffic_policy(d.external_traffic_local
                                          ? pb::EXTERNAL_TRAFFIC_POLICY_LOCAL
                                          : pb::EXTERNAL_TRAFFIC_POLICY_CLUSTER);
      vs->set_session_affinity(d.client_ip_affinity ? pb::SESSION_AFFINITY_CLIENT_IP
                                                    : pb::SESSION_AFFINITY_NONE);
      vs->set_session_affinity_timeout_seconds(d.affinity_timeout_s);
      vs->set_maglev_table_size(0);  // the agents' default, the same everywhere
      vs->set_hash_seed(0);          // cluster-wide: every node hashes a flow alike
      for (const IpPrefix& p : d.source_ranges) {
        pb::IpPrefix* out = vs->add_source_ranges();
        setAddress(p.addr, out->mutable_address());
        out->set_prefix_length(p.length);  // in the family's terms, as IpPrefix keeps it
      }
      vs->set_idle_timeout_seconds(d.idle_timeout_s);
      vs->set_drain_timeout_seconds(d.drain_timeout_s);
      for (const DesiredBackend& b : d.backends) {
        pb::Backend* pbb = vs->add_backends();
        pbb->set_key(backendKey(b));
        setAddress(b.addr, pbb->mutable_address());
        pbb->set_port(b.port);
        pbb->set_weight(1);
        pbb->set_state(b.state == BackendState::kDraining ? pb::BACKEND_STATE_DRAINING
                                                          : pb::BACKEND_STATE_ACTIVE);
        pbb->set_node_name(b.node);
        pbb->set_zone(b.zone);
      }
      vips.insert(d.vip);
    }
    for (const IpAddr& vip : vips) {
      auto chosen = announcer_map.find(vip);
      if (chosen == announcer_map.end()) continue;
      const std::string& who = chosen->second;
      pb::Announcement* a = ds->add_announcements();
      setAddress(vip, a->mutable_vip());
      a->set_mode(pb::ANNOUNCEMENT_MODE_L2);
      a->set_announcer(who == node);
      a->set_announcer_node(who);
    }
    return msg;
  }

  grpc::Status Sync(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<pb::ControllerMessage, pb::AgentMessage>* stream) override {
    if (is_leader && !is_leader()) {
      pb::ControllerMessage m;
      m.mutable_not_leader();
      stream->Write(m);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "not the leader; reconnect");
    }
    const bool mtls = !opt.plaintext && (!opt.tls_ca.empty() || !opt.tls_ca_pem.empty());
    if (grpc::Status st = admitPeer(mtls, *ctx); !st.ok()) return st;
    pb::AgentMessage first;
    if (!stream->Read(&first) || !first.has_hello() || first.hello().node_name().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "the first message must be a Hello with node_name");
    }
    if (grpc::Status st = checkHelloNode(mtls, *ctx, first.hello().node_name()); !st.ok()) {
      return st;
    }
    auto session = std::make_shared<Session>();
    session->node = first.hello().node_name();
    session->peer = ctx->peer();
    session->ctx = ctx;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& s : sessions) {
        // The same node again (an agent restarted before its old stream
        // died): the new stream wins.
        if (s->alive && s->node == session->node) s->ctx->TryCancel();
      }
      sessions.push_back(session);
      ++generation;  // the set of announcers may change
    }
    cv.notify_all();
    spdlog::info("event=agent_connected node={} peer={} last_applied={}", session->node,
                 session->peer, first.hello().last_applied_generation());

    std::thread reader([&] {
      pb::AgentMessage m;
      while (stream->Read(&m)) {
        if (m.has_report()) {
          const bool healthy = m.report().datapath().state() == pb::DATAPATH_STATE_HEALTHY ||
                               m.report().datapath().state() == pb::DATAPATH_STATE_UNSPECIFIED;
          std::lock_guard<std::mutex> lock(mu);
          if (healthy != session->healthy) {
            session->healthy = healthy;
            ++generation;  // its VIPs move (or may come back)
            cv.notify_all();
            spdlog::warn("event=agent_health node={} healthy={} reasons=\"{}\"", session->node,
                         healthy,
                         m.report().datapath().degraded_reasons_size() > 0
                             ? m.report().datapath().degraded_reasons(0)
                             : "");
          }
          continue;
        }
        if (!m.has_ack()) continue;
        const pb::Ack& ack = m.ack();
        std::lock_guard<std::mutex> lock(mu);
        if (ack.result() == pb::ACK_RESULT_APPLIED ||
            ack.result() == pb::ACK_RESULT_APPLIED_WITH_ERRORS) {
          session->acked = std::max(session->acked, ack.generation());
        }
        session->last_error = ack.error_message();
        if (!ack.error_message().empty()) {
          spdlog::warn("event=agent_apply_error node={} generation={} msg=\"{}\"", session->node,
                       ack.generation(), ack.error_message());
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      session->alive = false;
      cv.notify_all();
    });

    bool write_failed = false;
    while (true) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] {
        return stopping || !session->alive || generation > session->sent || ctx->IsCancelled();
      });
      if (stopping || !session->alive || ctx->IsCancelled()) break;
      if (is_leader && !is_leader()) {
        pb::ControllerMessage m;
        m.mutable_not_leader();
        lock.unlock();
        stream->Write(m);
        break;
      }
      lock.unlock();
      std::this_thread::sleep_for(opt.debounce);  // coalesce a burst of changes
      lock.lock();
      refreshAnnouncers();
      const uint64_t gen = generation;
      const auto st = state;
      const auto ann = announcers;
      lock.unlock();
      const pb::ControllerMessage msg = build(session->node, gen, *st, *ann);
      if (!stream->Write(msg)) {
        write_failed = true;
        break;
      }
      lock.lock();
      session->sent = gen;
    }
    ctx->TryCancel();
    reader.join();
    {
      std::lock_guard<std::mutex> lock(mu);
      session->alive = false;
      sessions.remove(session);
      ++generation;  // its VIPs move to the remaining agents now
      if (!stopping) ++resets;
    }
    cv.notify_all();
    spdlog::warn("event=agent_disconnected node={} peer={} acked={} write_failed={}", session->node,
                 session->peer, session->acked, write_failed);
    return grpc::Status::OK;
  }
};

Result<std::unique_ptr<SyncServer>> SyncServer::start(SyncServerOptions options,
                                                      std::function<bool()> is_leader) {
  std::unique_ptr<SyncServer> s(new SyncServer());
  s->impl_ = std::make_unique<Impl>();
  Impl& impl = *s->impl_;
  impl.opt = std::move(options);
  impl.is_leader = std::move(is_leader);
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
  impl.server = b.BuildAndStart();
  if (!impl.server || impl.bound_port == 0) {
    return Status::error("cannot serve gRPC on " + impl.opt.address);
  }
  spdlog::info("event=grpc_listening address={} port={} tls={} mtls={}", impl.opt.address,
               impl.bound_port, !impl.opt.plaintext,
               !impl.opt.tls_ca.empty() || !impl.opt.tls_ca_pem.empty());
  return s;
}

SyncServer::~SyncServer() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    for (const auto& s : impl_->sessions) s->ctx->TryCancel();
  }
  impl_->cv.notify_all();
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

void SyncServer::publish(const Reconciled& r) {
  auto st = std::make_shared<std::map<std::string, NodeDesiredState>>();
  for (const NodeDesiredState& n : r.nodes) (*st)[n.node] = n;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->state = std::move(st);
    ++impl_->generation;
  }
  impl_->cv.notify_all();
}

std::vector<AgentStatus> SyncServer::agents() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<AgentStatus> out;
  const auto now = std::chrono::steady_clock::now();
  for (const auto& s : impl_->sessions) {
    if (!s->alive) continue;
    out.push_back({s->node, s->peer, s->sent, s->acked, s->last_error,
                   std::chrono::duration<double>(now - s->since).count()});
  }
  return out;
}

uint64_t SyncServer::generation() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->generation;
}

uint64_t SyncServer::streamResets() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->resets;
}

int SyncServer::port() const {
  return impl_->bound_port;
}

}  // namespace flowlb::controller
