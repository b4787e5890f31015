#include "common/pki.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>

namespace flowlb::pki {
namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using Key = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using Req = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;
using Name = std::unique_ptr<X509_NAME, Deleter<X509_NAME, X509_NAME_free>>;
using Ext = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using Serial = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;

// The library's own words for the last failure.
Status sslError(const std::string& what) {
  std::string msg = what;
  unsigned long e = ERR_get_error();
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    msg += ": " + std::string(buf);
  }
  ERR_clear_error();
  return Status::error(msg);
}

Bio memory(const std::string& text) {
  return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string drain(BIO* b) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

Result<Key> readKey(const std::string& pem) {
  Bio b = memory(pem);
  Key k(PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr));
  if (!k) return sslError("not a PEM private key");
  return k;
}

Result<Cert> readCert(const std::string& pem) {
  Bio b = memory(pem);
  Cert c(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
  if (!c) return sslError("not a PEM certificate");
  return c;
}

Result<std::string> keyPem(EVP_PKEY* k) {
  Bio b(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr)) {
    return sslError("cannot write the key");
  }
  return drain(b.get());
}

Result<std::string> writeCert(X509* c) {
  Bio b(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_X509(b.get(), c)) return sslError("cannot write the certificate");
  return drain(b.get());
}

Key newKey() {
  return Key(EVP_EC_gen("P-256"));
}

Status addExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  Ext ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || !X509_add_ext(cert, ext.get(), -1)) return sslError("cannot add " + value);
  return Status::ok();
}

// A certificate for `subject_cn` with `key`'s public half, valid from five
// minutes ago (clock skew) for `validity`, with a random 127-bit serial.
Result<Cert> newCert(const std::string& subject_cn, EVP_PKEY* pub, std::chrono::seconds validity) {
  Cert c(X509_new());
  X509_set_version(c.get(), 2);
  unsigned char rnd[16];
  RAND_bytes(rnd, sizeof rnd);
  rnd[0] &= 0x7f;
  Serial bn(BN_bin2bn(rnd, sizeof rnd, nullptr));
  BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(c.get()));
  X509_gmtime_adj(X509_getm_notBefore(c.get()), -300);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), static_cast<long>(validity.count()));
  X509_NAME* name = X509_get_subject_name(c.get());
  if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const unsigned char*>(subject_cn.c_str()), -1,
                                  -1, 0)) {
    return sslError("cannot set the subject");
  }
  if (!X509_set_pubkey(c.get(), pub)) return sslError("cannot set the public key");
  return c;
}

std::string commonName(X509_NAME* name) {
  const int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i < 0) return "";
  ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0) return "";
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

int64_t unixTime(const ASN1_TIME* t) {
  struct tm tm {};
  if (!ASN1_TIME_to_tm(t, &tm)) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

}  // namespace

Result<std::string> generateKey() {
  Key k = newKey();
  if (!k) return sslError("cannot generate a P-256 key");
  return keyPem(k.get());
}

Result<std::string> makeCsr(const std::string& key_pem, const std::string& common_name) {
  auto k = readKey(key_pem);
  if (!k) return k.status();
  Req r(X509_REQ_new());
  X509_NAME* name = X509_REQ_get_subject_name(r.get());
  if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                                  -1, 0) ||
      !X509_REQ_set_pubkey(r.get(), k->get()) || !X509_REQ_sign(r.get(), k->get(), EVP_sha256())) {
    return sslError("cannot build the CSR");
  }
  Bio b(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_X509_REQ(b.get(), r.get())) return sslError("cannot write the CSR");
  return drain(b.get());
}

Result<KeyAndCert> createCa(const std::string& common_name, std::chrono::seconds validity) {
  Key k = newKey();
  if (!k) return sslError("cannot generate a P-256 key");
  auto c = newCert(common_name, k.get(), validity);
  if (!c) return c.status();
  X509_set_issuer_name(c->get(), X509_get_subject_name(c->get()));
  for (const auto& [nid, value] :
       {std::pair{NID_basic_constraints, "critical,CA:TRUE"},
        std::pair{NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"},
        std::pair{NID_subject_key_identifier, "hash"}}) {
    if (Status st = addExt(c->get(), c->get(), nid, value); !st) return st;
  }
  if (!X509_sign(c->get(), k.get(), EVP_sha256())) return sslError("cannot sign the CA");
  auto kp = keyPem(k.get());
  auto cp = writeCert(c->get());
  if (!kp) return kp.status();
  if (!cp) return cp.status();
  return KeyAndCert{*kp, *cp};
}

Result<CertificateInfo> inspect(const std::string& pem) {
  auto c = readCert(pem);
  if (!c) return c.status();
  CertificateInfo info;
  info.common_name = commonName(X509_get_subject_name(c->get()));
  info.not_before_unix = unixTime(X509_get0_notBefore(c->get()));
  info.not_after_unix = unixTime(X509_get0_notAfter(c->get()));
  const uint32_t xku = X509_get_extended_key_usage(c->get());
  info.client_auth = (xku & XKU_SSL_CLIENT) != 0;
  info.server_auth = (xku & XKU_SSL_SERVER) != 0;
  auto* sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(c->get(), NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
    if (g->type == GEN_DNS) {
      const ASN1_STRING* s = g->d.dNSName;
      info.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                  static_cast<size_t>(ASN1_STRING_length(s)));
    } else if (g->type == GEN_IPADD) {
      char buf[64] = {};
      const ASN1_OCTET_STRING* s = g->d.iPAddress;
      const int len = ASN1_STRING_length(s);
      if (len == 4 || len == 16) {
        inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s), buf, sizeof buf);
        info.dns_names.emplace_back(buf);  // listed with the names
      }
    }
  }
  GENERAL_NAMES_free(sans);
  return info;
}

struct CertificateAuthority::Impl {
  Cert cert;
  Key key;
};

CertificateAuthority::~CertificateAuthority() = default;
CertificateAuthority::CertificateAuthority(CertificateAuthority&&) noexcept = default;
CertificateAuthority& CertificateAuthority::operator=(CertificateAuthority&&) noexcept = default;

Result<CertificateAuthority> CertificateAuthority::load(const std::string& cert_pem,
                                                        const std::string& key_pem) {
  auto c = readCert(cert_pem);
  if (!c) return Status::error("CA certificate: " + c.error());
  auto k = readKey(key_pem);
  if (!k) return Status::error("CA key: " + k.error());
  if (X509_check_private_key(c->get(), k->get()) != 1) {
    ERR_clear_error();
    return Status::error("the CA key does not belong to the CA certificate");
  }
  if (X509_check_ca(c->get()) == 0) {
    return Status::error("the CA certificate is not a CA (basicConstraints CA:TRUE missing)");
  }
  CertificateAuthority ca;
  ca.impl_ = std::make_unique<Impl>();
  ca.impl_->cert = std::move(*c);
  ca.impl_->key = std::move(*k);
  ca.cert_pem_ = cert_pem;
  return ca;
}

Result<std::string> CertificateAuthority::signNodeCsr(const std::string& csr_pem,
                                                      const std::string& node_name,
                                                      std::chrono::seconds validity) const {
  Bio b = memory(csr_pem);
  Req r(PEM_read_bio_X509_REQ(b.get(), nullptr, nullptr, nullptr));
  if (!r) return sslError("not a PEM certificate request");
  Key pub(X509_REQ_get_pubkey(r.get()));
  if (!pub || X509_REQ_verify(r.get(), pub.get()) != 1) {
    return sslError("the request's signature does not verify");
  }
  const std::string cn = commonName(X509_REQ_get_subject_name(r.get()));
  if (cn != node_name) {
    return Status::error("the request is for CN '" + cn + "', not for node '" + node_name + "'");
  }
  auto c = newCert(node_name, pub.get(), validity);
  if (!c) return c.status();
  X509_set_issuer_name(c->get(), X509_get_subject_name(impl_->cert.get()));
  for (const auto& [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:FALSE"},
                                   std::pair{NID_key_usage, "critical,digitalSignature"},
                                   std::pair{NID_ext_key_usage, "clientAuth"},
                                   std::pair{NID_authority_key_identifier, "keyid"}}) {
    if (Status st = addExt(c->get(), impl_->cert.get(), nid, value); !st) return st;
  }
  if (!X509_sign(c->get(), impl_->key.get(), EVP_sha256())) return sslError("cannot sign");
  return writeCert(c->get());
}

Result<KeyAndCert> CertificateAuthority::issueServer(const std::vector<std::string>& dns_names,
                                                     std::chrono::seconds validity) const {
  if (dns_names.empty()) return Status::error("a server certificate needs at least one name");
  Key k = newKey();
  if (!k) return sslError("cannot generate a P-256 key");
  auto c = newCert(dns_names.front(), k.get(), validity);
  if (!c) return c.status();
  X509_set_issuer_name(c->get(), X509_get_subject_name(impl_->cert.get()));
  std::string san;
  for (const std::string& n : dns_names) {
    const bool ip = n.find_first_not_of("0123456789.") == std::string::npos ||
                    n.find(':') != std::string::npos;  // an address: an IP entry
    san += std::string(san.empty() ? "" : ",") + (ip ? "IP:" : "DNS:") + n;
  }
  for (const auto& [nid, value] :
       {std::pair{NID_basic_constraints, std::string("critical,CA:FALSE")},
        std::pair{NID_key_usage, std::string("critical,digitalSignature")},
        std::pair{NID_ext_key_usage, std::string("serverAuth")},
        std::pair{NID_subject_alt_name, san},
        std::pair{NID_authority_key_identifier, std::string("keyid")}}) {
    if (Status st = addExt(c->get(), impl_->cert.get(), nid, value); !st) return st;
  }
  if (!X509_sign(c->get(), impl_->key.get(), EVP_sha256())) return sslError("cannot sign");
  auto kp = keyPem(k.get());
  auto cp = writeCert(c->get());
  if (!kp) return kp.status();
  if (!cp) return cp.status();
  return KeyAndCert{*kp, *cp};
}

}  // namespace flowlb::pki
