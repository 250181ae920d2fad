// Compile-only check that kernels written against kiln/gpu/gpu.hpp build with nvcc for real GPUs:
//   nvcc -std=c++20 -arch=sm_80 -I kernels -c tests/emu/nvcc_smoke.cu -o /tmp/nvcc_smoke.o
// (not part of the CMake test globs; CI with a GPU runs the same kernels through tests/gpu).
#include "kiln/gpu/gpu.hpp"

namespace {

__global__ void smoke_reduce(const float* in, float* out, int n) {
  __shared__ float cache[256];
  float* scratch = kiln::gpu::dynamic_shared<float>();
  const unsigned t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  cache[t] = i < static_cast<unsigned>(n) ? __ldg(in + i) : 0.0f;
  scratch[t] = cache[t];
  __syncthreads();
  float v = cache[t] + scratch[t];
  for (int offset = warpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  v += __shfl_xor_sync(0xffffffffu, v, 1) + __shfl_up_sync(0xffffffffu, v, 1) + __shfl_sync(0xffffffffu, v, 0);
  const unsigned ballot = __ballot_sync(0xffffffffu, v > 0.0f);
  if (__any_sync(0xffffffffu, ballot != 0) && __all_sync(0xffffffffu, 1)) __syncwarp();
  if (__syncthreads_count(v > 0.0f) > 0 && t % warpSize == 0) atomicAdd(out, rsqrtf(fabsf(v) + 1.0f) + __expf(0.0f));
  __threadfence();
}

template <class T, int Scale>
__global__ void smoke_scale(T* data, int n, int* counter) {
  KILN_UNROLL
  for (int k = 0; k < 4; ++k) {
    const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x) * 4 + k;
    if (i < n) data[i] = __fmaf_rn(data[i], static_cast<T>(Scale), 0.0f);
  }
  atomicMax(counter, static_cast<int>(threadIdx.x));
  atomicMin(counter + 1, -static_cast<int>(threadIdx.x));
  atomicCAS(counter + 2, 0, 1);
  atomicExch(counter + 3, 5);
  atomicAdd(reinterpret_cast<unsigned*>(counter + 4), 1u);
}

// The emulated tensor-core and cp.async API compiles to the real thing (wmma.hpp, async_copy.hpp).
__global__ void smoke_fragments(const float* a, const __nv_bfloat16* ab, float* c) {
  namespace wmma = kiln::gpu::wmma;
  float* tile = kiln::gpu::dynamic_shared<float>();
  for (int i = static_cast<int>(threadIdx.x); i < 128; i += 32) kiln::gpu::cp_async<4>(&tile[i], &a[i], i < 100);
  kiln::gpu::cp_async_commit();
  kiln::gpu::cp_async_wait<0>();
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, tile, 8);
  wmma::load_matrix_sync(fb, tile, 8);
  for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> ha;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> hb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> hacc;
  wmma::load_matrix_sync(hacc, c, 16, wmma::mem_col_major);
  wmma::load_matrix_sync(ha, ab, 16);
  wmma::load_matrix_sync(hb, ab, 16);
  wmma::mma_sync(hacc, ha, hb, hacc);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
  wmma::store_matrix_sync(c + 256, hacc, 16, wmma::mem_col_major);
  kiln::gpu::cp_async_wait_all();
  if (threadIdx.x == 0) c[512] = __bfloat162float(__float2bfloat16(c[0]));
}

// Per-lane tensor-core instructions (mma.hpp): ldmatrix (plain and .trans), cvt.rna.tf32, mma.sync.
__global__ void smoke_mma(const float* a, float* d) {
  namespace mma = kiln::gpu::mma;
  float* tile = kiln::gpu::dynamic_shared<float>();
  for (int i = static_cast<int>(threadIdx.x); i < 256; i += 32) tile[i] = a[i];
  __syncthreads();
  const int lane = static_cast<int>(threadIdx.x);
  std::uint32_t ra[4], rb[2], hb[2];
  mma::ldmatrix_x4(ra, &tile[lane * 8 % 256]);
  mma::ldmatrix_x2(rb, &tile[lane % 16 * 4]);
  mma::ldmatrix_x2_trans(hb, &tile[lane % 16 * 4]);
  for (auto& x : ra) x = mma::float_to_tf32(__uint_as_float(x));
  float acc[4] = {0, 0, 0, 0};
  mma::mma_tf32_m16n8k8(acc, ra, rb, acc);
  mma::mma_bf16_m16n8k16(acc, ra, hb, acc);
  for (int i = 0; i < 4; ++i) d[lane * 4 + i] = acc[i];
}

}  // namespace

void nvcc_smoke(float* in, float* out, int n, int* counter) {
  kiln::gpu::Stream stream;
  kiln::gpu::set_max_dynamic_shared(smoke_reduce, 64 * 1024);
  KILN_LAUNCH(smoke_reduce, dim3((n + 255) / 256), dim3(256), 256 * sizeof(float), stream, in, out, n);
  KILN_LAUNCH((smoke_scale<float, 2>), (n + 1023) / 1024, 256, 0, kiln::gpu::Stream::default_stream(), in, n, counter);
  kiln::gpu::launch("smoke_scale", smoke_scale<float, 3>, 1, 32, 0, nullptr, in, n, counter);
  KILN_LAUNCH(smoke_fragments, 1, 32, 128 * sizeof(float), nullptr, in, reinterpret_cast<const __nv_bfloat16*>(in),
              out);
  KILN_LAUNCH(smoke_mma, 1, 32, 256 * sizeof(float), nullptr, in, out);
  stream.synchronize();
  kiln::gpu::synchronize();
  static_assert(!kiln::gpu::emulated);
  if (kiln::gpu::device_available()) (void)kiln::gpu::device_name();
  void* p = kiln::gpu::device_malloc(16);
  kiln::gpu::memset_device(p, 0, 16);
  kiln::gpu::memcpy_device_to_device(p, in, 16);
  kiln::gpu::memcpy_device_to_host(out, p, 4);
  kiln::gpu::memcpy_host_to_device(p, out, 4);
  kiln::gpu::device_free(p);
}
