// buffer_header: the 64 bytes in front of every buffer's data. It names the owning pool and the size
// class, links the buffer into the victim list, and carries the debug state. The data that follows is
// 64-byte aligned. The header is never poisoned: the pool reads it on every return.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#if defined(__SANITIZE_ADDRESS__)
#define BUFPOOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUFPOOL_ASAN 1
#endif
#endif
#ifdef BUFPOOL_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace bufpool {
class pool_core;
}

namespace bufpool::detail {

/// Debug state of a buffer, stored in its header.
enum class buffer_state : std::uint32_t { in_use = 0x55534544u, pooled = 0x504f4f4cu, freed = 0x46524545u };

/// Size-class index of buffers above max_class.
inline constexpr std::uint32_t oversize_class = 0xffffffffu;

/// Debug fill pattern of returned buffers (when not built with AddressSanitizer).
inline constexpr unsigned char poison_byte = 0xdb;

struct alignas(64) buffer_header {
  pool_core* owner;                  ///< the pool that allocated the buffer (its state, which outlives it)
  buffer_header* next;               ///< link in the victim list; meaningful only there
  std::size_t capacity;              ///< usable bytes after the header
  std::uintptr_t cookie;             ///< address ^ a constant: tells a bufpool buffer from other memory
  std::uint32_t cls;                 ///< size-class index, or oversize_class
  std::atomic<std::uint32_t> state;  ///< buffer_state; kept in debug mode only
  std::atomic<std::uint32_t> refs;   ///< holders of a shared_buffer (set by buffer::share); else unused
  std::uint32_t sampled;             ///< 1 while the leak detector holds a record of the buffer (its holder's)

  std::byte* data() noexcept { return reinterpret_cast<std::byte*>(this + 1); }
  static buffer_header* from_data(std::byte* p) noexcept { return reinterpret_cast<buffer_header*>(p) - 1; }
  std::uintptr_t expected_cookie() const noexcept {
    return reinterpret_cast<std::uintptr_t>(this) ^ std::uintptr_t{0x6275667030303031ull};
  }
};
static_assert(sizeof(buffer_header) == 64, "the data must start 64 bytes after the header");

/// Marks a returned buffer's data as off-limits: ASan poisoning under ASan, a fill pattern otherwise.
inline void poison(buffer_header* h) noexcept {
#ifdef BUFPOOL_ASAN
  ASAN_POISON_MEMORY_REGION(h->data(), h->capacity);
#else
  __builtin_memset(h->data(), poison_byte, h->capacity);
#endif
}

/// Makes a buffer's data usable again (a no-op without ASan).
inline void unpoison([[maybe_unused]] buffer_header* h) noexcept {
#ifdef BUFPOOL_ASAN
  ASAN_UNPOISON_MEMORY_REGION(h->data(), h->capacity);
#endif
}

}  // namespace bufpool::detail
