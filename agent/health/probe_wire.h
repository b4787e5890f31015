// What health probes send and how their answers are judged: the HTTP/1.1
// request and status line, and the DNS query for the root's NS and the
// check of its answer. Pure (bytes in, verdict out), so the prober's socket
// code only moves bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace flowlb::agent::health {

// The most of an HTTP answer a probe reads: the status line must be in it.
inline constexpr size_t kHttpReadLimit = 4096;

// GET `path` with Host `host` (the backend's "address:port"), closing after.
std::string httpRequest(const std::string& path, const std::string& host);

struct HttpVerdict {
  enum class Kind { kIncomplete, kMalformed, kStatus } kind = Kind::kIncomplete;
  int status = 0;  // kStatus
  bool passed() const { return kind == Kind::kStatus && status >= 200 && status < 400; }
};
// Judges the bytes received so far: the status line "HTTP/1.x NNN ...\r\n".
// kIncomplete while no line end arrived (and fewer than kHttpReadLimit bytes).
HttpVerdict parseHttpStatusLine(std::string_view received);

// A standard query for the root's NS records (QNAME ".", QTYPE NS, QCLASS IN).
std::vector<uint8_t> dnsQuery(uint16_t id);
// Any well-formed DNS response to query `id` passes (whatever its RCODE: the
// server answered): a full header with QR set and the same id, and question
// records that fit in the message. Empty string: passed; else why not.
std::string checkDnsResponse(const uint8_t* data, size_t len, uint16_t id);

}  // namespace flowlb::agent::health
