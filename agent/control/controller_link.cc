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
#include "flowlb/v1/sync.grpc.pb.h"

namespace flowlb::agent {

namespace pb = flowlb::v1;

namespace {

Result<IpAddr> address(const pb::IpAddress& a) {
  const std::string& b = a.addr();
  if (b.size() == 4) return IpAddr::fromV4(reinterpret_cast<const uint8_t*>(b.data()));
  if (b.size() == 16) return IpAddr::fromV6(reinterpret_cast<const uint8_t*>(b.data()));
  return Status::error("an address of " + std::to_string(b.size()) + " bytes");
}

}  // namespace

ReceivedState convertDesiredState(const pb::DesiredState& in, const std::string& node) {
  ReceivedState out;
  out.desired.generation = in.generation();
  const auto problem = [&out](const pb::VirtualService& vs, ApplyErrorCode code,
                              const std::string& what) {
    out.problems.push_back({vs.key(), code, "service '" + vs.key() + "': " + what});
  };
  for (const pb::VirtualService& vs : in.services()) {
    ServiceSpec s;
    s.name = vs.key();
    auto vip = address(vs.vip());
    if (!vip) {
      problem(vs, ApplyErrorCode::kInvalidArgument, "vip: " + vip.error());
      continue;
    }
    s.vip = *vip;
    if (vs.port() == 0 || vs.port() > 65535) {
      problem(vs, ApplyErrorCode::kInvalidArgument,
              "port " + std::to_string(vs.port()) + " out of range");
      continue;
    }
    s.port = static_cast<uint16_t>(vs.port());
    switch (vs.protocol()) {
      case pb::PROTOCOL_TCP: s.proto = 6; break;
      case pb::PROTOCOL_UDP: s.proto = 17; break;
      default:
        problem(vs, ApplyErrorCode::kUnsupported, "protocol not supported by this agent");
        continue;
    }
    s.mode = vs.forwarding_mode() == pb::FORWARDING_MODE_DSR ? ForwardingMode::kDsr
                                                             : ForwardingMode::kNat;
    s.client_ip_affinity = vs.session_affinity() == pb::SESSION_AFFINITY_CLIENT_IP;
    s.keep_client_address = vs.external_traffic_policy() == pb::EXTERNAL_TRAFFIC_POLICY_LOCAL;
    if (vs.proxy_protocol() == pb::PROXY_PROTOCOL_V2) s.proxy_protocol = ProxyProtocol::kV2;
    if (vs.session_affinity_timeout_seconds() > 0) {
      s.affinity_timeout_s = vs.session_affinity_timeout_seconds();
    }
    s.idle_timeout_s = vs.idle_timeout_seconds();
    s.drain_timeout_s = vs.drain_timeout_seconds();
    if (vs.maglev_table_size() > 0) s.maglev_size = vs.maglev_table_size();
    s.hash_seed = vs.hash_seed();
    bool bad = false;
    for (const pb::IpPrefix& p : vs.source_ranges()) {
      auto a = address(p.address());
      const uint32_t max = a && a->isV4() ? 32 : 128;
      if (!a || p.prefix_length() > max) {
        problem(vs, ApplyErrorCode::kInvalidArgument, "a malformed source range");
        bad = true;
        break;
      }
      s.source_ranges.push_back({*a, static_cast<uint8_t>(p.prefix_length())});
    }
    if (bad) continue;
    for (const pb::Backend& b : vs.backends()) {
      auto a = address(b.address());
      if (!a || b.port() == 0 || b.port() > 65535) {
        problem(vs, ApplyErrorCode::kInvalidArgument,
                "backend " + b.key() + " is malformed; skipped (the others serve)");
        continue;
      }
      // Local: only this node's endpoints (their replies pass through it).
      if (s.keep_client_address && !node.empty() && !b.node_name().empty() &&
          b.node_name() != node) {
        continue;
      }
      BackendSpec bs;
      bs.addr = *a;
      bs.port = static_cast<uint16_t>(b.port());
      // Weighted Maglev is not built yet: every weight counts as 1, and 0
      // ("no new flows") as draining.
      bs.state = b.state() == pb::BACKEND_STATE_DRAINING || b.weight() == 0
                     ? BackendState::kDraining
                     : BackendState::kActive;
      bs.node = b.node_name();
      bs.zone = b.zone();
      s.backends.push_back(std::move(bs));
    }
    out.desired.services.push_back(std::move(s));
  }
  for (const pb::Announcement& a : in.announcements()) {
    if (!a.announcer()) continue;
    auto vip = address(a.vip());
    if (!vip) {
      out.other_problems.push_back("announcement: " + vip.error());
      continue;
    }
    out.announce.push_back(*vip);
  }
  return out;
}

struct ControllerLink::Impl {
  ControllerLinkOptions opt;
  ControllerLink* owner = nullptr;
  std::string ca_pem;
  std::shared_ptr<const ClientIdentity> file_identity;
  std::shared_ptr<const ClientIdentity> channel_identity;  // the one `channel` was built with
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::FlowlbControl::Stub> stub;

  // A channel presenting `id` (none: server authentication only, or plaintext).
  void connectWith(std::shared_ptr<const ClientIdentity> id) {
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
    channel = grpc::CreateCustomChannel(opt.address, creds, args);
    stub = pb::FlowlbControl::NewStub(channel);
    channel_identity = std::move(id);
  }
  std::atomic<uint64_t> last_applied{0};
  std::atomic<bool> healthy{true};
  std::string unhealthy_reason;  // guarded by write_mu

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
    return m;
  }

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::optional<ReceivedState> latest;
  std::mutex write_mu;  // one writer at a time on the stream
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
      if (opt.client_identity && !opt.client_identity()) {
        // No certificate yet (the bootstrap is still asking): look again
        // soon, without growing the backoff of failed streams.
        if (!said_waiting) {
          spdlog::info("event=controller_link_waiting reason=no_certificate_yet address={}",
                       opt.address);
          said_waiting = true;
        }
        std::unique_lock<std::mutex> lock(mu);
        if (cv.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping; })) return;
        continue;
      }
      const bool got_state = once();
      owner->connected_.store(false);
      if (got_state) backoff.reset();
      const auto wait = backoff.next();
      std::unique_lock<std::mutex> lock(mu);
      if (cv.wait_for(lock, wait, [this] { return stopping; })) return;
    }
  }

  // One stream, from hello to its end. True if it delivered a state.
  bool once() {
    if (opt.client_identity) {
      auto id = opt.client_identity();
      if (!id) return false;
      if (id != channel_identity) connectWith(std::move(id));  // a new or renewed certificate
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
    h->set_agent_version("0.1.0");
    h->set_last_applied_generation(last_applied.load());
    h->add_capabilities(pb::CAPABILITY_L2_ANNOUNCEMENT);
    pb::DatapathCapabilities* caps = h->mutable_datapath();
    caps->set_af_xdp_copy(true);
    caps->set_ipv6(true);
    caps->set_nat(true);
    caps->set_dsr(true);
    caps->set_max_maglev_table_size(kMaxMaglevSize);
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
          spdlog::info("event=controller_not_leader address={} msg=\"reconnecting\"", opt.address);
          break;
        }
        if (!m.has_desired_state()) continue;
        if (!owner->connected_.exchange(true)) {
          spdlog::info("event=controller_connected address={}", opt.address);
        }
        got_state = true;
        ReceivedState st = convertDesiredState(m.desired_state(), opt.node_name);
        {
          std::lock_guard<std::mutex> lock(mu);
          latest = std::move(st);  // only the newest matters
        }
        cv.notify_all();
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
                 opt.address, static_cast<int>(st.error_code()), st.error_message());
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
  if (!impl.opt.client_identity) impl.connectWith(impl.file_identity);
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
  if (r.applied) impl_->last_applied = r.generation;
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
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  if (impl_->stream) impl_->stream->Write(m);
}

}  // namespace flowlb::agent
