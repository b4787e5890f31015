#include "controller/k8s/kubeconfig.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace flowlb::controller::k8s {
namespace {

class KubeconfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/flowlb-kubeconfig-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const std::string p = dir_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  std::string dir_;
};

// "-----BEGIN CERTIFICATE-----\n" in base64.
constexpr const char* kPemB64 = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";

TEST_F(KubeconfigTest, CurrentContextWithTokenAndCaData) {
  const std::string p = write("config", std::string(R"(
apiVersion: v1
kind: Config
current-context: prod
contexts:
  - name: dev
    context: {cluster: devc, user: devu}
  - name: prod
    context: {cluster: prodc, user: produ}
clusters:
  - name: devc
    cluster: {server: "https://dev:6443"}
  - name: prodc
    cluster:
      server: "https://10.0.0.1:6443/"
      certificate-authority-data: )") + kPemB64 +
                                            R"(
users:
  - name: devu
    user: {token: dev-token}
  - name: produ
    user: {token: prod-token}
)");
  auto c = loadKubeconfig(p);
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->server, "https://10.0.0.1:6443");  // trailing slash dropped
  EXPECT_EQ(c->token, "prod-token");
  EXPECT_EQ(c->ca_pem, "-----BEGIN CERTIFICATE-----\n");
  EXPECT_FALSE(c->insecure_skip_verify);

  auto dev = loadKubeconfig(p, "dev");
  ASSERT_TRUE(dev) << dev.error();
  EXPECT_EQ(dev->server, "https://dev:6443");
  EXPECT_EQ(dev->token, "dev-token");
}

TEST_F(KubeconfigTest, FileReferencesAreRelativeToTheKubeconfig) {
  write("ca.crt", "CA PEM");
  write("client.crt", "CERT PEM");
  write("client.key", "KEY PEM");
  write("token", "file-token\n");
  const std::string p = write("config", R"(
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "https://api:6443", certificate-authority: ca.crt}}]
users:
  - name: u
    user: {client-certificate: client.crt, client-key: client.key, tokenFile: token}
)");
  auto c = loadKubeconfig(p);
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->ca_pem, "CA PEM");
  EXPECT_EQ(c->client_cert_pem, "CERT PEM");
  EXPECT_EQ(c->client_key_pem, "KEY PEM");
  EXPECT_EQ(c->token, "file-token");
}

TEST_F(KubeconfigTest, ErrorsNameTheProblem) {
  auto missing = loadKubeconfig(dir_ + "/nope");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().find("nope"), std::string::npos);

  const std::string p = write("config", R"(
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "https://api:6443"}}]
users: [{name: u, user: {exec: {command: aws}}}]
)");
  auto exec = loadKubeconfig(p);
  ASSERT_FALSE(exec);
  EXPECT_NE(exec.error().find("exec"), std::string::npos);

  auto ctx = loadKubeconfig(p, "other");
  ASSERT_FALSE(ctx);
  EXPECT_NE(ctx.error().find("no context 'other'"), std::string::npos);

  const std::string half = write("half", R"(
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "https://api:6443"}}]
users: [{name: u, user: {client-certificate-data: QQ==}}]
)");
  auto h = loadKubeconfig(half);
  ASSERT_FALSE(h);
  EXPECT_NE(h.error().find("without a key"), std::string::npos);
}

TEST_F(KubeconfigTest, InCluster) {
  write("token", "sa-token\n");
  write("ca.crt", "SA CA");
  setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto c = inClusterConfig(dir_);
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->server, "https://[fd00::1]:443");
  EXPECT_EQ(c->token, "sa-token");
  EXPECT_EQ(c->ca_pem, "SA CA");
  EXPECT_EQ(c->token_file, dir_ + "/token");

  auto outside = inClusterConfig(dir_);
  ASSERT_FALSE(outside);
  EXPECT_NE(outside.error().find("KUBERNETES_SERVICE_HOST"), std::string::npos);
}

}  // namespace
}  // namespace flowlb::controller::k8s
