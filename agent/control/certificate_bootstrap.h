// The agent's side of FlowlbBootstrap (proto/flowlb/v1/bootstrap.proto):
// it generates a private key (which never leaves the process), asks the
// controller to sign a certificate for its node with its projected
// ServiceAccount token, and asks again with a new key before the
// certificate expires. The controller link opens each new stream with the
// newest certificate (ControllerLinkOptions::client_identity); a stream
// already open is not disturbed by a renewal.
//
// The controller is trusted through `ca_pem` alone: the request is sent over
// TLS that authenticates the controller, so the token only ever reaches it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "agent/control/controller_link.h"
#include "common/status.h"

namespace flowlb::agent {

struct CertificateBootstrapOptions {
  std::string address;     // the controller, host:port
  std::string ca_pem;      // the CA the controller's certificate is signed by
  std::string token_file;  // re-read for every request: the kubelet rotates it
  std::string node_name;
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{10000};
  // Renew once this share of the certificate's lifetime has passed
  // (+-10 % jitter, so agents do not all ask at once).
  double renew_after = 0.6;
};

class CertificateBootstrap {
 public:
  static Result<std::unique_ptr<CertificateBootstrap>> start(CertificateBootstrapOptions options);
  ~CertificateBootstrap();
  CertificateBootstrap(const CertificateBootstrap&) = delete;
  CertificateBootstrap& operator=(const CertificateBootstrap&) = delete;

  // The newest certificate and key, or null before the first one arrived.
  std::shared_ptr<const ClientIdentity> current() const;
  // Certificates received so far.
  uint64_t issued() const;

 private:
  CertificateBootstrap() = default;
  void run();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace flowlb::agent
