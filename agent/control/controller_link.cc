#include "agent/control/controller_link.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/backoff.h"
#include "common/file.h"
#include "common/flow_record.h"
#include "common/version.h"
#include "flowlb/v1/sync.grpc.pb.h"

namespace flowlb::agent {

namespace pb = flowlb::v1;

struct ControllerLink::Impl {
  ControllerLinkOptions opt;
  ControllerLink* owner = nullptr;
  std::string ca_pem;
  std::shared_ptr<const ClientIdentity> file_identity;
  std::shared_ptr<const ClientIdentity> channel_identity;  // the one `channel` was built with
  std::string target;                                      // the address `channel` goes to
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::FlowlbControl::Stub> stub;
  std::string redirect;  // the leader a follower named; "" the configured address

  // A channel to `address` presenting `id` (none: server authentication
  // only, or plaintext); kept while both stay the same. For a leader named
  // by a follower, TLS still checks the certificate against the configured
  // address's host name.
  void connect(const std::string& address, std::shared_ptr<const ClientIdentity> id) {
    if (channel && address == target && id == channel_identity) return;
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (opt.plaintext) {
      creds = grpc::InsecureChannelCredentials();
    } else {
      grpc::SslCredentialsOptions o;
      o.pem_root_certs = ca_pem;
      if (id) {
        o.pem_cert_chain = id->cert_pem;
        o.pem_private_key = id->key_pem;
      }
      creds = grpc::SslCredentials(o);
    }
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(opt.keepalive_time.count()));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(opt.keepalive_timeout.count()));
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                static_cast<int>(opt.backoff_initial.count()));
    // (Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC also takes it as the connect
    // timeout, and a handshake needs more than a backoff step.)
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(opt.backoff_max.count()));
    args.SetMaxReceiveMessageSize(256 << 20);
    if (address != opt.address && !opt.plaintext) {
      const std::string host = opt.address.substr(0, opt.address.rfind(':'));
      args.SetSslTargetNameOverride(
          host.size() > 1 && host.front() == '[' ? host.substr(1, host.size() - 2) : host);
    }
    channel = grpc::CreateCustomChannel(address, creds, args);
    stub = pb::FlowlbControl::NewStub(channel);
    target = address;
    channel_identity = std::move(id);
  }
  std::atomic<uint64_t> last_applied{0};
  std::atomic<bool> healthy{true};
  std::string unhealthy_reason;                     // guarded by write_mu
  std::vector<BackendHealthReport> backend_health;  // guarded by write_mu
  std::vector<BgpSessionReport> bgp_sessions;       // guarded by write_mu

  pb::AgentMessage healthReport() {
    pb::AgentMessage m;
    pb::Report* r = m.mutable_report();
    r->set_active_generation(last_applied.load());
    r->set_timestamp_unix_ms(
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count()));
    pb::DatapathHealth* h = r->mutable_datapath();
    h->set_state(healthy.load() ? pb::DATAPATH_STATE_HEALTHY : pb::DATAPATH_STATE_DOWN);
    if (!healthy.load()) h->add_degraded_reasons(unhealthy_reason);
    for (const BackendHealthReport& b : backend_health) {
      pb::BackendHealth* bh = r->add_backend_health();
      bh->set_service_key(b.service_key);
      bh->set_backend_key(b.backend_key);
      bh->set_status(b.status == BackendHealthReport::Status::kHealthy ? pb::HEALTH_STATUS_HEALTHY
                     : b.status == BackendHealthReport::Status::kUnhealthy
                         ? pb::HEALTH_STATUS_UNHEALTHY
                         : pb::HEALTH_STATUS_UNKNOWN);
      bh->set_detail(b.detail);
    }
    for (const BgpSessionReport& b : bgp_sessions) {
      pb::BgpSessionStatus* out = r->add_bgp_sessions();
      out->set_peer(b.peer);
      out->set_state(static_cast<pb::BgpSessionState>(static_cast<int>(b.state) + 1));
      out->set_since_unix_ms(b.since_unix_ms);
      out->set_routes_advertised(b.routes_advertised);
      out->set_routes_received(b.routes_received);
      out->set_flaps(b.flaps);
      out->set_established_count(b.established_count);
      if (b.bfd) out->set_bfd(static_cast<pb::BfdSessionState>(static_cast<int>(*b.bfd)));
      out->set_last_error(b.last_error);
    }
    return m;
  }

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::optional<AgentCapabilities> capabilities;
  std::optional<ReceivedState> latest;
  std::unique_ptr<DesiredView> view;  // guarded by mu
  std::mutex write_mu;                // one writer at a time on the stream
  grpc::ClientContext* ctx = nullptr;
  grpc::ClientReaderWriter<pb::AgentMessage, pb::ControllerMessage>* stream = nullptr;
  std::thread thread;

  void run() {
    Backoff backoff(opt.backoff_initial, opt.backoff_max);
    bool said_waiting = false;
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stopping) return;
      }
      std::shared_ptr<const ClientIdentity> id = file_identity;
      if (opt.client_identity) {
        id = opt.client_identity();
        if (!id) {
          // No certificate yet (the bootstrap is still asking): look again
          // soon, without growing the backoff of failed streams.
          if (!said_waiting) {
            spdlog::info("event=controller_link_waiting reason=no_certificate_yet address={}",
                         opt.address);
            said_waiting = true;
          }
          std::unique_lock<std::mutex> lock(mu);
          if (cv.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping; })) {
            return;
          }
          continue;
        }
      }
      const std::string was_redirected = redirect;
      // A new or renewed certificate, or another address, makes a new channel.
      connect(redirect.empty() ? opt.address : redirect, std::move(id));
      redirect.clear();
      const bool got_state = once();
      owner->connected_.store(false);
      if (got_state) backoff.reset();
      // Sent to the leader by a follower: go there at once. Back from the
      // leader (it stepped down, or it is gone): the configured address, with
      // backoff.
      if (!redirect.empty() && redirect != was_redirected) continue;
      redirect.clear();
      const auto wait = backoff.next();
      std::unique_lock<std::mutex> lock(mu);
      if (cv.wait_for(lock, wait, [this] { return stopping; })) return;
    }
  }

  void send(const pb::AgentMessage& m) {
    std::lock_guard<std::mutex> lock(write_mu);
    if (stream) stream->Write(m);
  }

  void refuse(const pb::DesiredState& ds, pb::AckResult result, const std::string& why,
              uint64_t active) {
    spdlog::warn("event=desired_state_refused generation={} result={} msg=\"{}\"", ds.generation(),
                 pb::AckResult_Name(result), why);
    pb::AgentMessage m;
    pb::Ack* a = m.mutable_ack();
    a->set_generation(ds.generation());
    a->set_result(result);
    a->set_active_generation(active);
    a->set_error_message(why);
    send(m);
  }

  // One stream, from hello to its end. True if it delivered a state.
  bool once() {
    AgentCapabilities c;  // said in the Hello: the datapath must be up first
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [this] { return capabilities.has_value() || stopping; });
      if (stopping) return false;
      c = *capabilities;
    }
    grpc::ClientContext context;
    auto s = stub->Sync(&context);
    {
      std::lock_guard<std::mutex> lock(write_mu);
      ctx = &context;
      stream = s.get();
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stopping) context.TryCancel();
    }
    pb::AgentMessage hello;
    pb::Hello* h = hello.mutable_hello();
    h->set_node_name(opt.node_name);
    h->set_agent_version(buildVersion());
    h->set_last_applied_generation(last_applied.load());
    if (c.l2_announcement) h->add_capabilities(pb::CAPABILITY_L2_ANNOUNCEMENT);
    h->add_capabilities(pb::CAPABILITY_INCREMENTAL_UPDATES);              // DesiredView
    h->add_capabilities(pb::CAPABILITY_IMPLICIT_BACKEND_KEYS);            // convert.cc
    h->add_capabilities(pb::CAPABILITY_BGP);                              // convert_bgp.cc
    h->add_capabilities(pb::CAPABILITY_HEALTH_CHECKS);                    // agent/health
    h->add_capabilities(pb::CAPABILITY_MAGLEV_FINGERPRINTS);              // AckReport::fingerprints
    if (opt.on_flow_sync) h->add_capabilities(pb::CAPABILITY_FLOW_SYNC);  // flow_sync.h
    pb::DatapathCapabilities* caps = h->mutable_datapath();
    caps->set_af_xdp_zero_copy(c.af_xdp_zero_copy);
    caps->set_af_xdp_copy(c.af_xdp_copy);
    caps->set_xdp_native(c.xdp_native);
    caps->set_xdp_generic(c.xdp_generic);
    caps->set_xdp_dispatcher(c.xdp_dispatcher);
    caps->set_ipv6(c.ipv6);
    caps->set_nat(c.nat);
    caps->set_dsr(c.dsr);
    caps->set_max_maglev_table_size(c.max_maglev_table_size);
    caps->set_conntrack_capacity(c.conntrack_capacity);
    bool got_state = false;
    bool ok;
    {
      std::lock_guard<std::mutex> lock(write_mu);
      ok = s->Write(hello) && s->Write(healthReport());
    }
    if (ok) {
      pb::ControllerMessage m;
      while (s->Read(&m)) {
        if (m.has_not_leader()) {
          redirect = m.not_leader().leader_address();
          spdlog::info("event=controller_not_leader address={} leader=\"{}\" msg=\"reconnecting\"",
                       target, redirect);
          break;
        }
        if (m.has_flow_sync()) {
          if (opt.on_flow_sync) {
            opt.on_flow_sync(m.flow_sync().records(), m.flow_sync().origin_node(),
                             m.flow_sync().dump());
          }
          continue;
        }
        if (m.has_flow_sync_dump()) {
          if (opt.on_flow_sync_dump) opt.on_flow_sync_dump(m.flow_sync_dump().for_node());
          continue;
        }
        if (!m.has_desired_state()) continue;
        if (!owner->connected_.exchange(true)) {
          spdlog::info("event=controller_connected address={}", target);
        }
        got_state = true;
        DesiredView::Outcome o;
        uint64_t active;
        {
          std::lock_guard<std::mutex> lock(mu);
          o = view->receive(m.desired_state());
          active = view->active();
          if (o.kind == DesiredView::Kind::kState) latest = std::move(o.state);  // the newest
        }
        if (o.kind == DesiredView::Kind::kBaseMismatch) {
          refuse(m.desired_state(), pb::ACK_RESULT_BASE_GENERATION_MISMATCH, o.error, active);
        } else if (o.kind == DesiredView::Kind::kRejected) {
          refuse(m.desired_state(), pb::ACK_RESULT_REJECTED, o.error, active);
        } else {
          cv.notify_all();
          if (opt.on_state) opt.on_state();
        }
      }
    }
    {
      std::lock_guard<std::mutex> lock(write_mu);
      ctx = nullptr;
      stream = nullptr;
    }
    context.TryCancel();
    const grpc::Status st = s->Finish();
    owner->resets_.fetch_add(1);
    spdlog::warn("event=controller_disconnected address={} code={} msg=\"{}\" datapath=unchanged",
                 target, static_cast<int>(st.error_code()), st.error_message());
    return got_state;
  }
};

Result<std::unique_ptr<ControllerLink>> ControllerLink::start(ControllerLinkOptions options,
                                                              uint64_t last_applied) {
  std::unique_ptr<ControllerLink> link(new ControllerLink());
  link->impl_ = std::make_unique<Impl>();
  Impl& impl = *link->impl_;
  impl.opt = std::move(options);
  impl.owner = link.get();
  impl.last_applied = last_applied;
  if (!impl.opt.plaintext && !impl.opt.tls_ca.empty()) {
    auto ca = readFile(impl.opt.tls_ca);
    if (!ca) return ca.status();
    impl.ca_pem = *ca;
  }
  if (!impl.opt.tls_cert.empty()) {
    auto cert = readFile(impl.opt.tls_cert);
    auto key = readFile(impl.opt.tls_key);
    if (!cert) return cert.status();
    if (!key) return key.status();
    impl.file_identity = std::make_shared<ClientIdentity>(ClientIdentity{*cert, *key});
  }
  impl.view = std::make_unique<DesiredView>(impl.opt.node_name, last_applied);
  impl.thread = std::thread([&impl] { impl.run(); });
  return link;
}

ControllerLink::~ControllerLink() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  {
    std::lock_guard<std::mutex> lock(impl_->write_mu);
    if (impl_->ctx) impl_->ctx->TryCancel();
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void ControllerLink::setHealthy(bool healthy, const std::string& why) {
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  impl_->healthy = healthy;
  impl_->unhealthy_reason = why;
  if (impl_->stream) impl_->stream->Write(impl_->healthReport());
}

void ControllerLink::setBackendHealth(std::vector<BackendHealthReport> health) {
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  impl_->backend_health = std::move(health);
  if (impl_->stream) impl_->stream->Write(impl_->healthReport());
}

void ControllerLink::setBgpSessions(std::vector<BgpSessionReport> sessions) {
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  if (sessions == impl_->bgp_sessions) return;
  impl_->bgp_sessions = std::move(sessions);
  if (impl_->stream) impl_->stream->Write(impl_->healthReport());
}

bool ControllerLink::sendFlowSync(const std::string& records, bool dump) {
  pb::AgentMessage m;
  pb::FlowSyncBatch* b = m.mutable_flow_sync();
  b->set_format(kFlowRecordFormat);
  b->set_records(records);
  b->set_dump(dump);
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  return impl_->stream != nullptr && impl_->stream->Write(m);
}

void ControllerLink::setCapabilities(const AgentCapabilities& caps) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->capabilities = caps;
  }
  impl_->cv.notify_all();
}

std::optional<ReceivedState> ControllerLink::take() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::optional<ReceivedState> out = std::move(impl_->latest);
  impl_->latest.reset();
  return out;
}

bool ControllerLink::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout,
                            [this] { return impl_->latest.has_value() || impl_->stopping; });
}

void ControllerLink::ack(const AckReport& r) {
  if (r.applied) {
    impl_->last_applied = r.generation;
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->view->applied(r.generation);  // the base of the next INCREMENTAL state
  }
  pb::AgentMessage m;
  pb::Ack* a = m.mutable_ack();
  a->set_generation(r.generation);
  a->set_result(!r.applied         ? pb::ACK_RESULT_REJECTED
                : r.errors.empty() ? pb::ACK_RESULT_APPLIED
                                   : pb::ACK_RESULT_APPLIED_WITH_ERRORS);
  a->set_active_generation(impl_->last_applied.load());
  if (!r.applied) a->set_error_message(r.error);
  for (const ServiceError& e : r.errors) {
    pb::ApplyError* pe = a->add_errors();
    pe->set_service_key(e.service);
    switch (e.code) {
      case ApplyErrorCode::kInvalidArgument:
        pe->set_code(pb::APPLY_ERROR_CODE_INVALID_ARGUMENT);
        break;
      case ApplyErrorCode::kUnsupported: pe->set_code(pb::APPLY_ERROR_CODE_UNSUPPORTED); break;
      case ApplyErrorCode::kResourceExhausted:
        pe->set_code(pb::APPLY_ERROR_CODE_RESOURCE_EXHAUSTED);
        break;
      case ApplyErrorCode::kConflict: pe->set_code(pb::APPLY_ERROR_CODE_CONFLICT); break;
      case ApplyErrorCode::kInternal: pe->set_code(pb::APPLY_ERROR_CODE_INTERNAL); break;
    }
    pe->set_message(e.message);
  }
  for (const AckReport::Fingerprint& f : r.fingerprints) {
    pb::MaglevFingerprint* pf = a->add_maglev_fingerprints();
    pf->set_service_key(f.service);
    pf->set_fingerprint(f.fingerprint);
    pf->set_table_size(f.table_size);
    pf->set_backend_count(f.backend_count);
  }
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  if (impl_->stream) impl_->stream->Write(m);
}

}  // namespace flowlb::agent
