#include "controller/identity/serving_tls.h"

#include "common/file.h"

namespace flowlb::controller {

Result<ServingTls> loadServingTls(const ServingTlsFlags& f) {
  ServingTls out;
  if (f.ca_pem) {
    auto ca = pki::CertificateAuthority::load(f.ca_pem->cert_pem, f.ca_pem->key_pem);
    if (!ca) return Status::error("the CA Secret: " + ca.error());
    out.ca = std::move(*ca);
    out.ca_cert_pem = f.ca_pem->cert_pem;
  } else if (!f.ca_key_file.empty()) {
    if (f.ca_file.empty()) return Status::error("--tls-ca-key needs --tls-ca (its certificate)");
    auto cert = readFile(f.ca_file);
    if (!cert) return cert.status();
    auto key = readFile(f.ca_key_file);
    if (!key) return key.status();
    auto ca = pki::CertificateAuthority::load(*cert, *key);
    if (!ca) return Status::error(f.ca_file + " / " + f.ca_key_file + ": " + ca.error());
    out.ca = std::move(*ca);
    out.ca_cert_pem = *cert;
  } else if (!f.ca_file.empty()) {
    auto cert = readFile(f.ca_file);
    if (!cert) return cert.status();
    out.ca_cert_pem = *cert;
  }
  if (!f.cert_file.empty()) {
    auto cert = readFile(f.cert_file);
    if (!cert) return cert.status();
    auto key = readFile(f.key_file);
    if (!key) return key.status();
    out.cert_pem = *cert;
    out.key_pem = *key;
    return out;
  }
  if (!out.ca) return Status::error("give --tls-cert/--tls-key, or --tls-ca with --tls-ca-key");
  if (f.server_names.empty()) {
    return Status::error("a self-issued serving certificate needs --tls-server-name");
  }
  auto issued = out.ca->issueServer(f.server_names, f.self_issued_validity);
  if (!issued) return Status::error("cannot issue the serving certificate: " + issued.error());
  out.cert_pem = issued->cert_pem;
  out.key_pem = issued->key_pem;
  out.self_issued = true;
  return out;
}

}  // namespace flowlb::controller
