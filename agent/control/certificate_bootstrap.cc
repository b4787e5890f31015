#include "agent/control/certificate_bootstrap.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "common/backoff.h"
#include "common/file.h"
#include "common/pki.h"
#include "flowlb/v1/bootstrap.grpc.pb.h"

namespace flowlb::agent {

namespace pb = flowlb::v1;

struct CertificateBootstrap::Impl {
  CertificateBootstrapOptions opt;
  std::unique_ptr<pb::FlowlbBootstrap::Stub> stub;

  mutable std::mutex mu;  // guards everything below
  std::condition_variable cv;
  bool stopping = false;
  std::shared_ptr<const ClientIdentity> identity;
  uint64_t issued = 0;

  // One request; the renewal time on success.
  Result<std::chrono::system_clock::time_point> request() {
    auto token = readFile(opt.token_file);
    if (!token) return token.status();
    while (!token->empty() && std::isspace(static_cast<unsigned char>(token->back()))) {
      token->pop_back();
    }
    auto key = pki::generateKey();
    if (!key) return key.status();
    auto csr = pki::makeCsr(*key, opt.node_name);
    if (!csr) return csr.status();
    pb::CertificateRequest req;
    req.set_node_name(opt.node_name);
    req.set_csr_pem(*csr);
    req.set_service_account_token(*token);
    pb::CertificateResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    ctx.set_wait_for_ready(true);  // a controller still starting is waited for, not failed
    const grpc::Status st = stub->IssueCertificate(&ctx, req, &resp);
    if (!st.ok()) {
      return Status::error("code " + std::to_string(static_cast<int>(st.error_code())) + ": " +
                           st.error_message());
    }
    auto info = pki::inspect(resp.certificate_pem());
    if (!info) return Status::error("the controller sent no valid certificate: " + info.error());
    if (info->common_name != opt.node_name) {
      return Status::error("the controller sent a certificate for '" + info->common_name + "'");
    }
    auto id = std::make_shared<ClientIdentity>();
    id->cert_pem = resp.certificate_pem();
    id->key_pem = *key;
    const double life = static_cast<double>(info->not_after_unix - info->not_before_unix);
    std::mt19937_64 rng(std::random_device{}());
    const double share = opt.renew_after * std::uniform_real_distribution<double>(0.9, 1.1)(rng);
    const auto renew =
        std::max(std::chrono::system_clock::from_time_t(info->not_before_unix) +
                     std::chrono::milliseconds(static_cast<int64_t>(life * share * 1000)),
                 std::chrono::system_clock::now() + std::chrono::seconds(1));
    spdlog::info(
        "event=certificate_received node={} not_after={} renew_in_s={}", opt.node_name,
        info->not_after_unix,
        std::chrono::duration_cast<std::chrono::seconds>(renew - std::chrono::system_clock::now())
            .count());
    std::lock_guard<std::mutex> lock(mu);
    identity = std::move(id);
    ++issued;
    return renew;
  }
};

Result<std::unique_ptr<CertificateBootstrap>> CertificateBootstrap::start(
    CertificateBootstrapOptions options) {
  if (options.ca_pem.empty()) {
    return Status::error("the certificate bootstrap needs the controller's CA (--tls-ca)");
  }
  std::unique_ptr<CertificateBootstrap> b(new CertificateBootstrap());
  b->impl_ = std::make_unique<Impl>();
  Impl& impl = *b->impl_;
  impl.opt = std::move(options);
  if (auto t = readFile(impl.opt.token_file); !t) {
    return Status::error("--bootstrap-token-file: " + t.error());
  }
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = impl.opt.ca_pem;  // server authentication only: no client certificate yet
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  impl.stub = pb::FlowlbBootstrap::NewStub(
      grpc::CreateCustomChannel(impl.opt.address, grpc::SslCredentials(o), args));
  CertificateBootstrap* self = b.get();
  b->thread_ = std::thread([self] { self->run(); });
  return b;
}

void CertificateBootstrap::run() {
  Impl& im = *impl_;
  Backoff backoff(im.opt.backoff_initial, im.opt.backoff_max);
  while (true) {
    auto renew = im.request();
    std::unique_lock<std::mutex> lock(im.mu);
    if (im.stopping) return;
    if (renew) {
      backoff.reset();
      im.cv.wait_until(lock, *renew, [&] { return im.stopping; });
    } else {
      const auto wait = backoff.next();
      spdlog::warn("event=certificate_request_failed node={} retry_in_ms={} msg=\"{}\"",
                   im.opt.node_name, wait.count(), renew.error());
      im.cv.wait_for(lock, wait, [&] { return im.stopping; });
    }
    if (im.stopping) return;
  }
}

CertificateBootstrap::~CertificateBootstrap() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const ClientIdentity> CertificateBootstrap::current() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->identity;
}

uint64_t CertificateBootstrap::issued() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->issued;
}

}  // namespace flowlb::agent
