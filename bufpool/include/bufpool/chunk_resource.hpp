// chunk_resource: a std::pmr::memory_resource that carves blocks out of chunks it maps itself and
// unmaps a chunk as soon as no block in it is in use, so memory a pool frees goes back to the
// operating system (glibc, by contrast, keeps most freed memory in its arenas).
//
// Layout: requests are grouped into bins by size (rounded up in steps of 1/32 of their power of two,
// at least 64 bytes: a pool's "class + 64-byte header" requests waste at most 3 %). A bin's chunks
// are mmap'd regions of at least 64 KiB and 8 blocks; a chunk hands out blocks by bumping an index
// (pages nobody asked for are never touched) and then from its free list. Requests over 1 MiB are
// mapped and unmapped one by one.
//
// Invariants (under mu_): a chunk is in its bin's `partial` list iff it has a free or never-used
// block; a chunk whose last block is returned is kept mapped as one of its bin's empty chunks (at
// most max_empty_chunks of them, so that blocks freed and taken again in rounds, as a starved pool
// does, do not map and unmap every round), and unmapped when the bin has that many already, or at the
// next release_unused() (which a server calls once per rotation). So the memory held beyond the
// blocks in use is at most: per bin, the unused blocks of chunks that still have a block in use, plus
// max_empty_chunks empty chunks (none right after release_unused()).
//
// Thread safety: every member function may be called from any thread; a mutex guards the bins. The
// resource is meant for a pool's slow paths (misses, frees at rotation), not for every get and put.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <new>
#include <vector>

namespace bufpool {

class chunk_resource final : public std::pmr::memory_resource {
public:
  /// Requests larger than this are mapped one by one.
  static constexpr std::size_t max_binned_bytes = std::size_t{1} << 20;
  /// A chunk is at least this large and holds at least min_blocks_per_chunk blocks.
  static constexpr std::size_t min_chunk_bytes = std::size_t{64} << 10;
  static constexpr std::size_t min_blocks_per_chunk = 8;
  /// Empty chunks a bin keeps mapped until release_unused().
  static constexpr std::size_t max_empty_chunks = 4;

  /// What the resource holds now.
  struct statistics {
    std::size_t mapped_bytes = 0;   ///< bytes mapped (chunks and large blocks)
    std::size_t in_use_bytes = 0;   ///< bytes of the blocks handed out and not returned (block sizes)
    std::size_t chunks = 0;         ///< chunks mapped
    std::size_t large_blocks = 0;   ///< requests over max_binned_bytes, mapped one by one
    std::uint64_t maps = 0;         ///< mmap calls so far
    std::uint64_t unmaps = 0;       ///< munmap calls so far
  };

  chunk_resource() = default;
  chunk_resource(const chunk_resource&) = delete;
  chunk_resource& operator=(const chunk_resource&) = delete;
  /// Unmaps every chunk, also those with blocks still in use: the owner of the resource outlives its users.
  ~chunk_resource() override {
    for (auto& [addr, c] : chunks_) unmap(c->base, c->bytes);  // the empty chunks are in chunks_ too
    for (auto& [addr, bytes] : large_) unmap(reinterpret_cast<void*>(addr), bytes);
    for (auto& [addr, c] : chunks_) delete c;
  }

  statistics stats() const {
    std::lock_guard lock(mu_);
    return stats_;
  }

  /// Unmaps every empty chunk kept for reuse; returns the bytes unmapped. Call it when the program is
  /// quiet for a while (a server: once per pool rotation), so that idle memory leaves the process.
  std::size_t release_unused() noexcept {
    std::lock_guard lock(mu_);
    std::size_t bytes = 0;
    for (auto& [size, b] : bins_) {
      for (chunk* c : b.empty) {
        bytes += c->bytes;
        drop_chunk(b, c);
      }
      b.empty.clear();
    }
    return bytes;
  }

  /// The block size a request of `bytes` with `alignment` is served with (a multiple of the alignment).
  static std::size_t block_size(std::size_t bytes, std::size_t alignment) noexcept {
    std::size_t n = std::max<std::size_t>({bytes, alignment, 64});
    const std::size_t step = std::max<std::size_t>({std::bit_floor(n) / 32, alignment, 64});
    return (n + step - 1) / step * step;
  }

private:
  struct chunk;
  struct bin {
    std::size_t block = 0;            // block size
    std::size_t blocks = 0;           // blocks per chunk
    std::size_t chunk_bytes = 0;      // mapped bytes per chunk
    std::size_t count = 0;            // chunks mapped
    std::vector<chunk*> partial;      // chunks with a free or never-used block
    std::vector<chunk*> empty;        // empty chunks kept mapped (capacity max_empty_chunks, reserved)
  };
  struct chunk {
    char* base = nullptr;
    std::size_t bytes = 0;
    bin* owner = nullptr;
    std::size_t live = 0;             // blocks handed out
    std::size_t bumped = 0;           // blocks ever handed out by bumping
    void* free = nullptr;             // returned blocks, linked through their first word
    bool in_partial = false;
  };

  static std::size_t page() noexcept {
    static const std::size_t p = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    return p;
  }
  static std::size_t round_to_page(std::size_t n) noexcept { return (n + page() - 1) / page() * page(); }

  void* map(std::size_t bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    ++stats_.maps;
    stats_.mapped_bytes += bytes;
    return p;
  }
  void unmap(void* p, std::size_t bytes) noexcept {
    ::munmap(p, bytes);
    ++stats_.unmaps;
    stats_.mapped_bytes -= bytes;
  }

  bin& bin_for(std::size_t block) {
    auto it = bins_.find(block);
    if (it != bins_.end()) return it->second;
    bin& b = bins_[block];
    b.block = block;
    b.chunk_bytes = round_to_page(std::max(min_chunk_bytes, block * min_blocks_per_chunk));
    b.blocks = b.chunk_bytes / block;
    b.empty.reserve(max_empty_chunks);  // keeping an empty chunk never allocates (or throws)
    return b;
  }

  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    if (alignment > page() || !std::has_single_bit(alignment)) throw std::bad_alloc();
    if (bytes > max_binned_bytes) {
      if (bytes > std::size_t{1} << 62) throw std::bad_alloc();
      const std::size_t n = round_to_page(bytes);
      std::lock_guard lock(mu_);
      void* p = map(n);
      try {
        large_.emplace(reinterpret_cast<std::uintptr_t>(p), n);
      } catch (...) {
        unmap(p, n);
        throw;
      }
      ++stats_.large_blocks;
      stats_.in_use_bytes += n;
      return p;
    }
    const std::size_t block = block_size(bytes, alignment);
    std::lock_guard lock(mu_);
    bin& b = bin_for(block);
    chunk* c = nullptr;
    if (!b.partial.empty()) {
      c = b.partial.back();
    } else {
      if (!b.empty.empty()) {
        c = b.empty.back();
        b.empty.pop_back();
      } else {
        c = new_chunk(b);
      }
      b.partial.push_back(c);  // capacity for every chunk of the bin is reserved in new_chunk
      c->in_partial = true;
    }
    void* p;
    if (c->free != nullptr) {
      p = c->free;
      c->free = *static_cast<void**>(p);
    } else {
      p = c->base + c->bumped++ * b.block;
    }
    ++c->live;
    stats_.in_use_bytes += b.block;
    if (c->free == nullptr && c->bumped == b.blocks) {  // full: out of the partial list
      b.partial.pop_back();
      c->in_partial = false;
    }
    return p;
  }

  chunk* new_chunk(bin& b) {
    auto c = std::make_unique<chunk>();
    // The partial list can then hold every chunk of the bin: pushing to it never allocates (or throws).
    b.partial.reserve(b.count + 1);
    c->base = static_cast<char*>(map(b.chunk_bytes));
    c->bytes = b.chunk_bytes;
    c->owner = &b;
    try {
      chunks_.emplace(reinterpret_cast<std::uintptr_t>(c->base), c.get());
    } catch (...) {
      unmap(c->base, c->bytes);
      throw;
    }
    ++stats_.chunks;
    ++b.count;
    return c.release();
  }

  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) noexcept override {
    if (p == nullptr) return;
    std::lock_guard lock(mu_);
    if (bytes > max_binned_bytes) {
      auto it = large_.find(reinterpret_cast<std::uintptr_t>(p));
      if (it == large_.end()) return;
      stats_.in_use_bytes -= it->second;
      unmap(p, it->second);
      large_.erase(it);
      --stats_.large_blocks;
      return;
    }
    (void)alignment;
    // The chunk holding p: the last one that starts at or before it.
    auto it = chunks_.upper_bound(reinterpret_cast<std::uintptr_t>(p));
    if (it == chunks_.begin()) return;
    chunk* c = std::prev(it)->second;
    if (static_cast<char*>(p) >= c->base + c->bytes) return;  // not ours
    bin& b = *c->owner;
    *static_cast<void**>(p) = c->free;
    c->free = p;
    --c->live;
    stats_.in_use_bytes -= b.block;
    if (c->live == 0) {
      release_empty(b, c);
    } else if (!c->in_partial) {
      b.partial.push_back(c);  // capacity reserved when the chunk was mapped
      c->in_partial = true;
    }
  }

  // c has no block in use: keep it as one of the bin's empty chunks, or unmap it if the bin has enough.
  void release_empty(bin& b, chunk* c) noexcept {
    if (c->in_partial) {
      b.partial.erase(std::find(b.partial.begin(), b.partial.end(), c));
      c->in_partial = false;
    }
    if (b.empty.size() < max_empty_chunks) {
      c->free = nullptr;  // start again by bumping: the free list would point into pages we keep anyway
      c->bumped = 0;
      b.empty.push_back(c);  // capacity reserved in bin_for
      return;
    }
    drop_chunk(b, c);
  }

  void drop_chunk(bin& b, chunk* c) noexcept {
    chunks_.erase(reinterpret_cast<std::uintptr_t>(c->base));
    unmap(c->base, c->bytes);
    --stats_.chunks;
    --b.count;
    delete c;
  }

  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }

  mutable std::mutex mu_;
  std::map<std::size_t, bin> bins_;                 // by block size; nodes are stable
  std::map<std::uintptr_t, chunk*> chunks_;         // by base address
  std::map<std::uintptr_t, std::size_t> large_;     // large blocks by address: their mapped size
  statistics stats_;
};

}  // namespace bufpool
