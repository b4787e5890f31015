// Big-endian writer and a bounds-checked reader for the BGP and BFD codecs.
// The reader never reads past its span: a short read sets `failed` and
// returns zeros, so a decoder checks once after a group of fields.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace flowlb::agent::wire {

struct Writer {
  std::vector<uint8_t> bytes;
  void u8(uint8_t v) { bytes.push_back(v); }
  void u16(uint16_t v) {
    bytes.push_back(static_cast<uint8_t>(v >> 8));
    bytes.push_back(static_cast<uint8_t>(v));
  }
  void u32(uint32_t v) {
    u16(static_cast<uint16_t>(v >> 16));
    u16(static_cast<uint16_t>(v));
  }
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> s) : s_(s) {}

  size_t left() const { return s_.size() - at_; }
  bool failed() const { return failed_; }
  bool done() const { return at_ == s_.size(); }

  uint8_t u8() { return need(1) ? s_[at_++] : 0; }
  uint16_t u16() {
    if (!need(2)) return 0;
    const uint16_t v = static_cast<uint16_t>(s_[at_] << 8 | s_[at_ + 1]);
    at_ += 2;
    return v;
  }
  uint32_t u32() {
    const uint32_t hi = u16();
    return hi << 16 | u16();
  }
  // The next n bytes as a span (empty and failed if fewer are left).
  std::span<const uint8_t> take(size_t n) {
    if (!need(n)) return {};
    auto out = s_.subspan(at_, n);
    at_ += n;
    return out;
  }

 private:
  bool need(size_t n) {
    if (failed_ || left() < n) {
      failed_ = true;
      return false;
    }
    return true;
  }
  std::span<const uint8_t> s_;
  size_t at_ = 0;
  bool failed_ = false;
};

}  // namespace flowlb::agent::wire
