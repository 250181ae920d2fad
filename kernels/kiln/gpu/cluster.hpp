#pragma once
// Thread-block clusters (sm_90): the blocks of a cluster run at once on one GPC and read and write
// each other's shared memory (distributed shared memory). Launch with kiln::gpu::launch_cluster /
// KILN_LAUNCH_CLUSTER (launch.hpp); in the kernel:
//   cluster::rank(), cluster::size()  this block's rank in its cluster (x fastest) and the block count
//   cluster::sync()                   barrier.cluster.arrive + wait: every thread of every block of the
//                                     cluster; orders shared-memory accesses across its blocks
//   cluster::map_shared(p, r)         the address of p's shared variable in the block of rank r
//   cluster::load_shared(p, r)        the float at p's place in the block of rank r, read as shared
//                                     memory (mapa + ld.shared::cluster: no generic load)
// A block must not return while another may still read its shared memory: end with cluster::sync().
// In the emulator a cluster's blocks run on one worker's fiber scheduler (emu_runner.hpp), so only
// dynamic shared memory (kiln::gpu::dynamic_shared) is per block there: a cluster kernel keeps its
// shared memory dynamic (map_shared refuses any other address). OS-thread mode runs a cluster's
// threads as OS threads at once; checking builds check its accesses across blocks (docs/emulator.md).
// On a GPU below sm_90 the functions trap.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL
#include <cstdint>
#include <string>

#include "kiln/gpu/emu_state.hpp"
#include "kiln/gpu/emu_sync.hpp"
#if KILN_EMU_CHECK
#include "kiln/gpu/emu_check.hpp"
#endif
#endif

namespace kiln::gpu::cluster {

#if KILN_GPU_REAL

__device__ __forceinline__ unsigned rank() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
#else
  __trap();
  return 0;
#endif
}
__device__ __forceinline__ unsigned size() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned n;
  asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(n));
  return n;
#else
  __trap();
  return 1;
#endif
}
__device__ __forceinline__ void sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.aligned;\n\tbarrier.cluster.wait.aligned;" ::: "memory");
#else
  __trap();
#endif
}
// mapa on a generic address: a generic address of the same offset in block r's shared memory.
template <class T>
__device__ __forceinline__ T* map_shared(T* p, unsigned r) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  std::uint64_t out;
  asm volatile("mapa.u64 %0, %1, %2;" : "=l"(out) : "l"(reinterpret_cast<std::uint64_t>(p)), "r"(r));
  return reinterpret_cast<T*>(out);
#else
  (void)r;
  __trap();
  return p;
#endif
}
__device__ __forceinline__ float load_shared(const float* p, unsigned r) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  std::uint32_t at;
  float v;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;"
               : "=r"(at)
               : "r"(static_cast<std::uint32_t>(__cvta_generic_to_shared(p))), "r"(r));
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(at) : "memory");
  return v;
#else
  (void)p;
  (void)r;
  __trap();
  return 0.0f;
#endif
}

#else               // the emulator

inline unsigned rank() { return emu::current("kiln::gpu::cluster::rank").block->cluster_rank; }
inline unsigned size() {
  const emu::ClusterContext* c = emu::current("kiln::gpu::cluster::size").block->cluster;
  return c != nullptr ? c->count : 1u;
}
inline void sync(const emu::CallSite& where = emu::CallSite::current()) { emu::cluster_barrier(where); }
template <class T>
T* map_shared(T* p, unsigned r) {
  emu::BlockContext& b = *emu::current("kiln::gpu::cluster::map_shared").block;
  const auto* at = reinterpret_cast<const unsigned char*>(p);
  const std::size_t bytes = b.kernel->dynamic_shared_bytes;
  if (at < b.dynamic_shared || at >= b.dynamic_shared + bytes) {
    [[maybe_unused]] emu::BlockLock lock = emu::lock_block(b);
    emu::fail(b, "kiln emulator: kiln::gpu::cluster::map_shared in " + emu::block_text(b) +
                     ": the address is not in the block's dynamic shared memory (" + std::to_string(bytes) +
                     " bytes); a cluster kernel keeps the shared memory other blocks read dynamic "
                     "(kiln::gpu::dynamic_shared)\n");
  }
  const unsigned count = b.cluster != nullptr ? b.cluster->count : 1u;
  if (r >= count) {
    [[maybe_unused]] emu::BlockLock lock = emu::lock_block(b);  // (the block's state: OS-thread mode)
    emu::fail(b, "kiln emulator: kiln::gpu::cluster::map_shared in " + emu::block_text(b) + ": rank " +
                     std::to_string(r) + " is not in a cluster of " + std::to_string(count) + " blocks\n");
  }
  const emu::BlockContext& other = b.cluster != nullptr ? *b.cluster->blocks[r] : b;
  return reinterpret_cast<T*>(other.dynamic_shared + (at - b.dynamic_shared));
}
inline float load_shared(const float* p, unsigned r, const emu::CallSite& where = emu::CallSite::current()) {
  const float* at = map_shared(p, r);
#if KILN_EMU_CHECK  // checked and counted as the kernel's own load would be (a call site of its own)
  const std::uintptr_t site =
      (std::uintptr_t{1} << 63) | (reinterpret_cast<std::uintptr_t>(where.file) * 31 + where.line) << 4;
  emu::on_kernel_access(reinterpret_cast<std::uintptr_t>(at), 4, false, reinterpret_cast<const void*>(site));
#else
  (void)where;
#endif
  return *at;
}

#endif

}  // namespace kiln::gpu::cluster
