// The certificates of the control link, behind one OpenSSL boundary.
//
// Node identity (docs/architecture.md, "Node identity"): every agent
// generates its own key at start and sends a certificate signing request for
// its node name; the controller, which alone holds the CA key, signs it
// after checking the agent's ServiceAccount token. The controller also
// issues its own serving certificate from the same CA, so no serving key is
// ever mounted into an agent. Keys are ECDSA P-256; everything crosses this
// boundary as PEM text.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace flowlb::pki {

struct KeyAndCert {
  std::string key_pem;
  std::string cert_pem;
};

// A new private key (PEM, PKCS#8).
Result<std::string> generateKey();

// A PKCS#10 request for CN=common_name, signed with key_pem.
Result<std::string> makeCsr(const std::string& key_pem, const std::string& common_name);

// A self-signed CA (for tests, labs and the chart's own CA).
Result<KeyAndCert> createCa(const std::string& common_name, std::chrono::seconds validity);

struct CertificateInfo {
  std::string common_name;
  std::vector<std::string> dns_names;  // and IP entries, as text
  int64_t not_before_unix = 0;
  int64_t not_after_unix = 0;
  bool client_auth = false;
  bool server_auth = false;
};
Result<CertificateInfo> inspect(const std::string& cert_pem);

class CertificateAuthority {
 public:
  // The CA certificate and its key; refuses a key that does not match or a
  // certificate that is not a CA.
  static Result<CertificateAuthority> load(const std::string& cert_pem, const std::string& key_pem);
  ~CertificateAuthority();
  CertificateAuthority(CertificateAuthority&&) noexcept;
  CertificateAuthority& operator=(CertificateAuthority&&) noexcept;

  // Signs a CSR whose subject CN is exactly `node_name` (and whose signature
  // verifies) with a client-auth certificate for CN=node_name. Nothing else
  // of the request is copied: no extensions, no other subject fields.
  Result<std::string> signNodeCsr(const std::string& csr_pem, const std::string& node_name,
                                  std::chrono::seconds validity) const;

  // A new key and a server-auth certificate for these names (DNS names, or
  // IP addresses, which become IP entries).
  Result<KeyAndCert> issueServer(const std::vector<std::string>& dns_names,
                                 std::chrono::seconds validity) const;

  const std::string& certPem() const { return cert_pem_; }

 private:
  CertificateAuthority() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string cert_pem_;
};

}  // namespace flowlb::pki
