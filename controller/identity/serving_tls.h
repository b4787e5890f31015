// What the controller serves the agents' link with, from its TLS flags:
//   --tls-cert/--tls-key              a serving certificate from files
//   --tls-ca                          the CA of the agents' certificates
//   --tls-ca-key                      that CA's key: the controller signs the
//                                     agents' certificates (bootstrap) and,
//                                     without --tls-cert, issues its own
//                                     serving certificate for --tls-server-name
// so the chart mounts the CA into the controller only, and no serving key
// is ever given to an agent.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/pki.h"
#include "common/status.h"

namespace flowlb::controller {

struct ServingTlsFlags {
  std::string cert_file, key_file, ca_file, ca_key_file;
  std::optional<pki::KeyAndCert> ca_pem;  // instead of ca_file/ca_key_file (read from the API)
  std::vector<std::string> server_names;  // for a self-issued serving certificate
  std::chrono::seconds self_issued_validity{std::chrono::hours(24 * 365)};
};

struct ServingTls {
  std::string cert_pem, key_pem;                // what the gRPC server presents
  std::optional<pki::CertificateAuthority> ca;  // set with --tls-ca-key
  std::string ca_cert_pem;                      // the agents' CA certificate, if any
  bool self_issued = false;
};

Result<ServingTls> loadServingTls(const ServingTlsFlags& f);

}  // namespace flowlb::controller
