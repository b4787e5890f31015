#include "agent/health/probe.h"

#include <netinet/in.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "agent/health/probe_wire.h"

#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51  // Linux 6.3
#endif

namespace flowlb::agent::health {

SslCtxPtr makeProbeSslContext() {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (ctx) SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  return ctx;
}

Probe::Probe(const ProbeTarget& target, SSL_CTX* tls, uint16_t port_ceiling, uint16_t dns_id)
    : target_(target), tls_ctx_(tls), dns_id_(dns_id) {
  const bool udp = target.check.kind == HealthCheckKind::kUdpDns;
  const bool v4 = target.addr.isV4();
  fd_.reset(::socket(v4 ? AF_INET : AF_INET6,
                     (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd_.valid()) {
    fail("socket", errno);
    return;
  }
  if (port_ceiling > 1) {
    // The kernel's ephemeral range, narrowed to below the SNAT ports (a
    // no-op when the range is below them already, as it should be).
    const uint32_t range = uint32_t{static_cast<uint16_t>(port_ceiling - 1)} << 16;
    (void)::setsockopt(fd_.get(), SOL_IP, IP_LOCAL_PORT_RANGE, &range, sizeof range);
  }
  sockaddr_storage ss{};
  socklen_t len;
  if (v4) {
    auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(target.port);
    std::memcpy(&sa->sin_addr, target.addr.v4(), 4);
    len = sizeof *sa;
  } else {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(target.port);
    std::memcpy(&sa->sin6_addr, target.addr.bytes.data(), 16);
    len = sizeof *sa;
  }
  if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0) {
    connected();
  } else if (errno == EINPROGRESS) {
    events_ = POLLOUT;
  } else {
    fail("connect", errno);
  }
}

void Probe::finish(bool passed, std::string detail) {
  done_ = true;
  passed_ = passed;
  detail_ = std::move(detail);
  events_ = 0;
  ssl_.reset();
  fd_.reset();
}

void Probe::fail(const std::string& what, int err) {
  finish(false, what + ": " + std::strerror(err));
}

void Probe::connected() {
  switch (target_.check.kind) {
    case HealthCheckKind::kTcp: finish(true, ""); return;
    case HealthCheckKind::kUdpDns: {
      const auto q = dnsQuery(dns_id_);
      out_.assign(q.begin(), q.end());
      step_ = Step::kSend;
      sendRequest();
      return;
    }
    case HealthCheckKind::kHttps:
      ssl_.reset(tls_ctx_ ? SSL_new(tls_ctx_) : nullptr);
      if (!ssl_ || SSL_set_fd(ssl_.get(), fd_.get()) != 1) {
        finish(false, "tls: cannot start a session");
        return;
      }
      SSL_set_connect_state(ssl_.get());
      step_ = Step::kHandshake;
      [[fallthrough]];
    case HealthCheckKind::kHttp:
      out_ = httpRequest(target_.check.path, target_.key.backend);
      if (step_ == Step::kHandshake) {
        advance();
      } else {
        step_ = Step::kSend;
        sendRequest();
      }
      return;
    case HealthCheckKind::kNone: finish(true, ""); return;
  }
}

bool Probe::tlsRetry(int ret, const char* what) {
  const int e = SSL_get_error(ssl_.get(), ret);
  if (e == SSL_ERROR_WANT_READ) {
    events_ = POLLIN;
    return true;
  }
  if (e == SSL_ERROR_WANT_WRITE) {
    events_ = POLLOUT;
    return true;
  }
  if (e == SSL_ERROR_SYSCALL && errno != 0) {
    fail(std::string("tls ") + what, errno);
    return false;
  }
  const unsigned long code = ERR_get_error();
  char buf[256] = "the peer closed the connection";
  if (code != 0) ERR_error_string_n(code, buf, sizeof buf);
  ERR_clear_error();
  finish(false, std::string("tls ") + what + ": " + buf);
  return false;
}

void Probe::sendRequest() {
  while (sent_ < out_.size()) {
    ssize_t n;
    if (ssl_) {
      const int r =
          SSL_write(ssl_.get(), out_.data() + sent_, static_cast<int>(out_.size() - sent_));
      if (r <= 0) {
        tlsRetry(r, "write");
        return;
      }
      n = r;
    } else {
      n = ::send(fd_.get(), out_.data() + sent_, out_.size() - sent_, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          events_ = POLLOUT;
          return;
        }
        fail(target_.check.kind == HealthCheckKind::kUdpDns ? "dns" : "send", errno);
        return;
      }
    }
    sent_ += static_cast<size_t>(n);
  }
  step_ = Step::kReceive;
  events_ = POLLIN;
}

void Probe::receive() {
  if (target_.check.kind == HealthCheckKind::kUdpDns) {
    uint8_t buf[1500];
    const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // wait on
      fail("dns", errno);
      return;
    }
    std::string why = checkDnsResponse(buf, static_cast<size_t>(n), dns_id_);
    if (why.empty()) {
      finish(true, "");
    } else if (why.find("another query id") == std::string::npos) {
      finish(false, why);
    }  // a stray answer: wait for ours
    return;
  }
  char buf[1024];
  while (true) {
    ssize_t n;
    if (ssl_) {
      const int r = SSL_read(ssl_.get(), buf, sizeof buf);
      if (r > 0) {
        n = r;
      } else {
        const int e = SSL_get_error(ssl_.get(), r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
          events_ = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
          return;
        }
        // The end (with or without close_notify): judge what arrived.
        if (e != SSL_ERROR_ZERO_RETURN && in_.empty()) {
          tlsRetry(r, "read");
          return;
        }
        ERR_clear_error();
        n = 0;
      }
    } else {
      n = ::recv(fd_.get(), buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        fail("recv", errno);
        return;
      }
    }
    if (n > 0) in_.append(buf, static_cast<size_t>(std::min<ssize_t>(n, kHttpReadLimit)));
    const HttpVerdict v = parseHttpStatusLine(in_);
    if (v.kind == HttpVerdict::Kind::kStatus) {
      finish(v.passed(), v.passed() ? "" : "http status " + std::to_string(v.status));
      return;
    }
    if (v.kind == HttpVerdict::Kind::kMalformed) {
      finish(false, "http: malformed status line");
      return;
    }
    if (n == 0) {
      finish(false, in_.empty() ? "http: connection closed without an answer"
                                : "http: connection closed inside the status line");
      return;
    }
  }
}

void Probe::advance() {
  if (done_) return;
  switch (step_) {
    case Step::kConnect: {
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) {
        fail("connect", err);
        return;
      }
      connected();
      return;
    }
    case Step::kHandshake: {
      const int r = SSL_do_handshake(ssl_.get());
      if (r == 1) {
        step_ = Step::kSend;
        sendRequest();
      } else {
        tlsRetry(r, "handshake");
      }
      return;
    }
    case Step::kSend: sendRequest(); return;
    case Step::kReceive: receive(); return;
  }
}

}  // namespace flowlb::agent::health
