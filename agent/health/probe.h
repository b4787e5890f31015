// One health probe in flight: a non-blocking socket driven by the prober's
// poll() loop through connect, (TLS handshake,) request and answer. It
// never blocks: each advance() does what the socket allows and says what to
// wait for next. The socket, and the TLS session over it, are owned here.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>

#include "agent/health/targets.h"
#include "common/unique_fd.h"

namespace flowlb::agent::health {

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

// A TLS client context that does not verify the backend's certificate (the
// probe checks the backend is alive, not who it is).
SslCtxPtr makeProbeSslContext();

class Probe {
 public:
  // `port_ceiling`: source ports stay below it (0: the kernel's choice), so
  // a probe's replies are never taken for the datapath's SNAT flows.
  Probe(const ProbeTarget& target, SSL_CTX* tls, uint16_t port_ceiling, uint16_t dns_id);
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  // Does what the socket allows now. Call once at start, then whenever
  // fd() is ready for events().
  void advance();
  bool done() const { return done_; }
  bool passed() const { return passed_; }
  const std::string& detail() const { return detail_; }  // why it failed
  int fd() const { return fd_.get(); }
  short events() const { return events_; }

 private:
  enum class Step { kConnect, kHandshake, kSend, kReceive };
  void finish(bool passed, std::string detail);
  void fail(const std::string& what, int err);
  void connected();
  void sendRequest();
  void receive();
  bool tlsRetry(int ret, const char* what);  // true: wait (events_ set); false: failed

  ProbeTarget target_;
  SSL_CTX* tls_ctx_;
  uint16_t dns_id_;
  UniqueFd fd_;
  SslPtr ssl_;
  Step step_ = Step::kConnect;
  std::string out_;  // the request still to send
  size_t sent_ = 0;
  std::string in_;  // the answer so far (bounded)
  short events_ = 0;
  bool done_ = false;
  bool passed_ = false;
  std::string detail_;
};

}  // namespace flowlb::agent::health
