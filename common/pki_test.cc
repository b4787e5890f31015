#include "common/pki.h"

#include <gtest/gtest.h>

#include <ctime>

namespace flowlb::pki {
namespace {

using namespace std::chrono_literals;

TEST(PkiTest, ASignedNodeCertificateNamesExactlyTheNode) {
  auto ca_pem = createCa("flowlb-ca", 24h);
  ASSERT_TRUE(ca_pem) << ca_pem.error();
  auto ca = CertificateAuthority::load(ca_pem->cert_pem, ca_pem->key_pem);
  ASSERT_TRUE(ca) << ca.error();
  auto key = generateKey();
  ASSERT_TRUE(key);
  auto csr = makeCsr(*key, "node-a");
  ASSERT_TRUE(csr) << csr.error();
  auto cert = ca->signNodeCsr(*csr, "node-a", 1h);
  ASSERT_TRUE(cert) << cert.error();
  auto info = inspect(*cert);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->common_name, "node-a");
  EXPECT_TRUE(info->client_auth);
  EXPECT_FALSE(info->server_auth);
  const int64_t now = std::time(nullptr);
  EXPECT_LE(info->not_before_unix, now);
  EXPECT_NEAR(static_cast<double>(info->not_after_unix), static_cast<double>(now + 3600), 5);
}

TEST(PkiTest, ARequestForAnotherNodeOrWithABadSignatureIsRefused) {
  auto ca_pem = createCa("flowlb-ca", 24h);
  auto ca = CertificateAuthority::load(ca_pem->cert_pem, ca_pem->key_pem);
  auto key = generateKey();
  auto csr = makeCsr(*key, "node-b");
  auto other = ca->signNodeCsr(*csr, "node-a", 1h);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error(), "the request is for CN 'node-b', not for node 'node-a'");
  std::string tampered = *csr;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(ca->signNodeCsr(tampered, "node-b", 1h));
  EXPECT_FALSE(ca->signNodeCsr("not a csr", "node-b", 1h));
}

TEST(PkiTest, LoadRefusesAForeignKeyAndANonCa) {
  auto a = createCa("a", 24h);
  auto b = createCa("b", 24h);
  auto mixed = CertificateAuthority::load(a->cert_pem, b->key_pem);
  ASSERT_FALSE(mixed);
  EXPECT_EQ(mixed.error(), "the CA key does not belong to the CA certificate");
  auto ca = CertificateAuthority::load(a->cert_pem, a->key_pem);
  auto server = ca->issueServer({"ctl.flowlb-system.svc", "ctl", "10.10.2.5", "fd00::5"}, 24h);
  ASSERT_TRUE(server) << server.error();
  auto info = inspect(server->cert_pem);
  EXPECT_TRUE(info->server_auth);
  EXPECT_EQ(info->dns_names,
            (std::vector<std::string>{"ctl.flowlb-system.svc", "ctl", "10.10.2.5", "fd00::5"}));
  auto not_ca = CertificateAuthority::load(server->cert_pem, server->key_pem);
  ASSERT_FALSE(not_ca);
  EXPECT_NE(not_ca.error().find("not a CA"), std::string::npos);
}

}  // namespace
}  // namespace flowlb::pki
