#pragma once
// Conv2d on the CPU: stride 1, zero padding K/2 (K odd), NCHW, weight [Cout, Cin, K, K].
//
//   reference::   the plain loops: the oracle every other version is tested against.
//   im2col/col2im the explicit lowering (kept as documentation and for tests).
//   conv2d_*      what the layers call: implicit-im2col GEMMs on the register-
//                 blocked micro-kernels of gemm_kernels.hpp (AVX-512 / AVX2 /
//                 portable, chosen at build time); see "the fast path" below.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <omp.h>

#include "kiln/core/conv_shape.hpp"
#include "kiln/cpu/gemm.hpp"
#include "kiln/cpu/gemm_kernels.hpp"

namespace kiln::cpu {

using kiln::ConvShape;

namespace reference {

inline void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y) {
  const std::int64_t p = s.pad();
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t i = 0; i < s.h; ++i)
        for (std::int64_t j = 0; j < s.w; ++j) {
          double acc = b ? b[o] : 0.0;
          for (std::int64_t c = 0; c < s.c_in; ++c)
            for (std::int64_t u = 0; u < s.k; ++u)
              for (std::int64_t v = 0; v < s.k; ++v) {
                const std::int64_t ii = i + u - p, jj = j + v - p;
                if (ii < 0 || ii >= s.h || jj < 0 || jj >= s.w) continue;
                acc += static_cast<double>(x[((n * s.c_in + c) * s.h + ii) * s.w + jj]) *
                       w[((o * s.c_in + c) * s.k + u) * s.k + v];
              }
          y[((n * s.c_out + o) * s.h + i) * s.w + j] = static_cast<float>(acc);
        }
}

// dx = conv_transpose(dy, w) (overwritten); dw, db accumulated (+=).
inline void conv2d_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                            float* db) {
  const std::int64_t p = s.pad();
  if (dx)
    for (std::int64_t i = 0; i < s.n * s.c_in * s.hw(); ++i) dx[i] = 0.0f;
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t o = 0; o < s.c_out; ++o)
      for (std::int64_t i = 0; i < s.h; ++i)
        for (std::int64_t j = 0; j < s.w; ++j) {
          const float g = dy[((n * s.c_out + o) * s.h + i) * s.w + j];
          if (db) db[o] += g;
          for (std::int64_t c = 0; c < s.c_in; ++c)
            for (std::int64_t u = 0; u < s.k; ++u)
              for (std::int64_t v = 0; v < s.k; ++v) {
                const std::int64_t ii = i + u - p, jj = j + v - p;
                if (ii < 0 || ii >= s.h || jj < 0 || jj >= s.w) continue;
                const std::int64_t xi = ((n * s.c_in + c) * s.h + ii) * s.w + jj;
                const std::int64_t wi = ((o * s.c_in + c) * s.k + u) * s.k + v;
                if (dx) dx[xi] += g * w[wi];
                if (dw) dw[wi] += g * x[xi];
              }
        }
}

}  // namespace reference

// col[(c*K + u)*K + v][i*W + j] = x[c][i + u - p][j + v - p] (0 outside): one image.
inline void im2col(const ConvShape& s, const float* x, float* col) {
  const std::int64_t p = s.pad();
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < s.c_in; ++c)
    for (std::int64_t u = 0; u < s.k; ++u)
      for (std::int64_t v = 0; v < s.k; ++v) {
        float* row = col + ((c * s.k + u) * s.k + v) * s.hw();
        const float* plane = x + c * s.hw();
        for (std::int64_t i = 0; i < s.h; ++i) {
          const std::int64_t ii = i + u - p;
          float* out = row + i * s.w;
          if (ii < 0 || ii >= s.h) {
            for (std::int64_t j = 0; j < s.w; ++j) out[j] = 0.0f;
            continue;
          }
          for (std::int64_t j = 0; j < s.w; ++j) {
            const std::int64_t jj = j + v - p;
            out[j] = (jj >= 0 && jj < s.w) ? plane[ii * s.w + jj] : 0.0f;
          }
        }
      }
}

// The adjoint of im2col: dx[c][..] = sum of the col entries that read it.
// Parallel over input channels: channel c only receives rows c*K*K..c*K*K+K*K-1.
inline void col2im(const ConvShape& s, const float* col, float* dx) {
  const std::int64_t p = s.pad();
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < s.c_in; ++c) {
    float* plane = dx + c * s.hw();
    for (std::int64_t i = 0; i < s.hw(); ++i) plane[i] = 0.0f;
    for (std::int64_t u = 0; u < s.k; ++u)
      for (std::int64_t v = 0; v < s.k; ++v) {
        const float* row = col + ((c * s.k + u) * s.k + v) * s.hw();
        for (std::int64_t i = 0; i < s.h; ++i) {
          const std::int64_t ii = i + u - p;
          if (ii < 0 || ii >= s.h) continue;
          for (std::int64_t j = 0; j < s.w; ++j) {
            const std::int64_t jj = j + v - p;
            if (jj >= 0 && jj < s.w) plane[ii * s.w + jj] += row[i * s.w + j];
          }
        }
      }
  }
}

// ---- the fast path -----------------------------------------------------------------
//
// All three passes are GEMMs over the flattened pixel index q = n*H*W + i*W + j
// (the batch and the image side by side), so small deep layers (16 images of
// 4x4) give as many GEMM columns as one large image, and the work splits over
// threads the same way for batch 16 at 64^2 and batch 1 at 256^2.
//
//   forward      y[o][q]  = b[o] + sum_kk W[o][kk] * col[kk][q]           (kk = (c, u, v))
//   input grad   dx[c][q] = sum_kk' W'[c][kk'] * col_dy[kk'][q]           (kk' = (o, u', v'))
//                with W'[c][o][u'][v'] = W[o][c][K-1-u'][K-1-v']: for stride 1 and odd K,
//                the transposed convolution is a convolution of dy with the
//                flipped, channel-swapped kernel (no col2im, no scatter-add).
//   weight grad  dW[o][kk] += sum_q dy[o][q] * col[kk][q]
//
// col is never materialised whole: conv_col_row writes one row of it for a
// range of q straight from the image (implicit im2col), into a per-thread chunk
// that stays in L2.
//   forward / input grad: per chunk of PC pixels, the K9 x PC slice of col is
//     built, then every (MR x NR) tile of the output is one kernel_outer call
//     over all K9 (A = the weight, packed [o-block][kk][MR] once per call and
//     shared by the threads). Chunks are split statically over threads.
//   weight grad: threads own disjoint column blocks of dW (blocks of DC rows
//     kk), so they write dW directly, with no partial sums to reduce; per chunk
//     of PD pixels a thread copies dy[:, chunk] and builds its DC rows of col,
//     then kernel_dot adds DR x DC dot products of length PD into dW.
// Every output element is summed in an order fixed by the shape alone, so
// results are identical run to run (and across thread counts).

namespace impl {

// dst[t] = col[(c*K + u)*K + v][q] for q = p0 + t, t < len:
//   x[n][c][i + u - p][j + v - p], 0 outside the image.
inline void conv_col_row(const ConvShape& s, const float* __restrict x, std::int64_t c, std::int64_t u,
                         std::int64_t v, std::int64_t p0, std::int64_t len, float* __restrict dst) {
  const std::int64_t p = s.pad(), H = s.h, W = s.w, HW = s.hw();
  std::int64_t n = p0 / HW, i = (p0 % HW) / W, j = p0 % W;
  for (std::int64_t t = 0; t < len;) {
    const std::int64_t seg = std::min(W - j, len - t);
    float* __restrict out = dst + t;
    const std::int64_t ii = i + u - p;
    if (ii < 0 || ii >= H) {
      for (std::int64_t e = 0; e < seg; ++e) out[e] = 0.0f;
    } else {
      const float* __restrict row = x + ((n * s.c_in + c) * H + ii) * W;
      const std::int64_t shift = j + v - p;  // out[e] = row[shift + e] where 0 <= shift + e < W
      const std::int64_t lo = std::clamp<std::int64_t>(-shift, 0, seg);
      const std::int64_t hi = std::clamp<std::int64_t>(W - shift, lo, seg);
      for (std::int64_t e = 0; e < lo; ++e) out[e] = 0.0f;
      for (std::int64_t e = lo; e < hi; ++e) out[e] = row[shift + e];
      for (std::int64_t e = hi; e < seg; ++e) out[e] = 0.0f;
    }
    t += seg;
    j += seg;
    if (j == W) {
      j = 0;
      if (++i == H) {
        i = 0;
        ++n;
      }
    }
  }
}

// Pixels per chunk of the forward / input-gradient GEMM: the K9 x PC slice of
// col about 512 KiB (half of a Zen 4/5 L2), between 1 and 8 NR-wide panels.
template <class Cfg>
inline std::int64_t conv_fwd_chunk(std::int64_t k9) {
  const std::int64_t pc = (128 * 1024 / k9) / Cfg::NR * Cfg::NR;
  return std::clamp<std::int64_t>(pc, Cfg::NR, 8 * Cfg::NR);
}

// Pixels per chunk of the weight gradient: the DC rows of col in L1 (1024
// pixels: 24 KiB at DC = 6), dy[:, chunk] at most 512 KiB (L2). Longer chunks
// mean fewer lane reductions per FMA (each kernel_dot call ends in one).
template <class Cfg>
inline std::int64_t conv_wgrad_chunk(const ConvShape& s) {
  const std::int64_t pd = (128 * 1024 / s.c_out) / 16 * 16;
  return std::min(std::clamp<std::int64_t>(pd, 128, 1024), round_up(s.n * s.hw(), 16));
}

template <class Cfg>
inline std::size_t conv_fwd_workspace_floats(std::int64_t m, std::int64_t k9, int threads) {
  const std::int64_t mp = round_up(m, Cfg::MR);
  const std::int64_t buf = round_up(k9 * conv_fwd_chunk<Cfg>(k9), 16);
  return static_cast<std::size_t>(mp * k9 + mp + threads * buf + 16 * 4);
}

template <class Cfg>
inline std::size_t conv_wgrad_workspace_floats(const ConvShape& s, int threads) {
  const std::int64_t pd = conv_wgrad_chunk<Cfg>(s);
  return static_cast<std::size_t>(threads * round_up((s.c_out + Cfg::DC) * pd, 16) + 16);
}

// y[n][o][q] = bias[o] + sum_kk W[o][kk] * col[kk][q]: the forward pass of the
// convolution s (c_in -> c_out). pack(ib, dst) writes the weight's rows
// ib*MR .. ib*MR + MR - 1 as dst[kk*MR + r] = W[ib*MR + r][kk] (0 past c_out).
template <class Cfg, class PackWeight>
inline void conv_implicit_gemm(const ConvShape& s, const float* x, PackWeight pack, const float* bias, float* y,
                               float* workspace, int threads) {
  constexpr std::int64_t MR = Cfg::MR, NR = Cfg::NR;
  const std::int64_t M = s.c_out, K9 = s.patch(), KK = s.k * s.k, HW = s.hw(), P = s.n * HW;
  const std::int64_t Mp = round_up(M, MR), mb = Mp / MR;
  const std::int64_t PC = conv_fwd_chunk<Cfg>(K9), nchunks = ceil_div(P, PC);
  const std::int64_t buf_floats = round_up(K9 * PC, 16);
  float* pa = align64(workspace);
  float* pbias = align64(pa + Mp * K9);
  float* bufs = align64(pbias + Mp);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
#pragma omp for schedule(static)
    for (std::int64_t ib = 0; ib < mb; ++ib) {
      pack(ib, pa + ib * K9 * MR);
      for (std::int64_t r = 0; r < MR; ++r) pbias[ib * MR + r] = bias && ib * MR + r < M ? bias[ib * MR + r] : 0.0f;
    }
    float* buf = bufs + omp_get_thread_num() * buf_floats;
#pragma omp for schedule(static)
    for (std::int64_t ch = 0; ch < nchunks; ++ch) {
      const std::int64_t p0 = ch * PC, len = std::min(PC, P - p0), lenp = round_up(len, NR);
      // buf[kk*PC + t] = col[kk][p0 + t]   (0 past P)
      for (std::int64_t kk = 0; kk < K9; ++kk) {
        float* row = buf + kk * PC;
        conv_col_row(s, x, kk / KK, (kk / s.k) % s.k, kk % s.k, p0, len, row);
        for (std::int64_t t = len; t < lenp; ++t) row[t] = 0.0f;
      }
      for (std::int64_t jr = 0; jr < lenp; jr += NR) {
        const std::int64_t q0 = p0 + jr, nj = std::min(NR, P - q0), n = q0 / HW, pix = q0 % HW;
        const bool one_image = nj == NR && pix + NR <= HW;
        for (std::int64_t ib = 0; ib < mb; ++ib) {
          const std::int64_t i0 = ib * MR;
          const float* a = pa + ib * K9 * MR;
          if (one_image && i0 + MR <= M) {
            // y[n][i0 + r][pix + j] for r < MR, j < NR: rows HW apart
            simd::kernel_outer<Cfg>(K9, a, buf + jr, PC, pbias + i0, y + (n * M + i0) * HW + pix, HW, false);
            continue;
          }
          // A tile that crosses an image boundary or the end: compute, then scatter.
          alignas(64) float tile[MR * NR];
          simd::kernel_outer<Cfg>(K9, a, buf + jr, PC, pbias + i0, tile, NR, false);
          const std::int64_t mi = std::min(MR, M - i0);
          for (std::int64_t jj = 0; jj < nj; ++jj) {
            const std::int64_t q = q0 + jj, nn = q / HW, pp = q % HW;
            for (std::int64_t r = 0; r < mi; ++r) y[(nn * M + i0 + r) * HW + pp] = tile[r * NR + jj];
          }
        }
      }
    }
  }
}

// dW[o][kk] += sum_q dy[o][q] * col[kk][q];  db[o] += sum_q dy[o][q].
template <class Cfg>
inline void conv_weight_grad(const ConvShape& s, const float* x, const float* dy, float* dw, float* db,
                             float* workspace, int threads) {
  constexpr std::int64_t DR = Cfg::DR, DC = Cfg::DC;
  const std::int64_t M = s.c_out, K9 = s.patch(), KK = s.k * s.k, HW = s.hw(), P = s.n * HW;
  const std::int64_t PD = conv_wgrad_chunk<Cfg>(s);
  const std::int64_t per_thread = round_up((M + DC) * PD, 16);
  const std::int64_t blocks = ceil_div(K9, DC);
  float* base = align64(workspace);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    if (db) {
#pragma omp for schedule(static) nowait
      for (std::int64_t o = 0; o < M; ++o) {
        float sum = 0.0f;
        for (std::int64_t n = 0; n < s.n; ++n) {
          const float* row = dy + (n * M + o) * HW;
          float part = 0.0f;
          for (std::int64_t i = 0; i < HW; ++i) part += row[i];
          sum += part;
        }
        db[o] += sum;
      }
    }
    const std::int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
    const std::int64_t b0 = blocks * t / T, b1 = blocks * (t + 1) / T;  // this thread's columns of dW
    float* dyc = base + t * per_thread;                                  // dyc[o*PD + l] = dy[o][p0 + l]
    float* colc = dyc + M * PD;                                          // colc[jj*PD + l] = col[j0 + jj][p0 + l]
    if (dw && b0 < b1) {
      for (std::int64_t p0 = 0; p0 < P; p0 += PD) {
        const std::int64_t len = std::min(PD, P - p0), lenp = round_up(len, Cfg::VL);
        for (std::int64_t o = 0; o < M; ++o) {
          float* out = dyc + o * PD;
          for (std::int64_t l = 0; l < len;) {
            const std::int64_t q = p0 + l, n = q / HW, pix = q % HW, seg = std::min(HW - pix, len - l);
            const float* __restrict src = dy + (n * M + o) * HW + pix;
            for (std::int64_t e = 0; e < seg; ++e) out[l + e] = src[e];
            l += seg;
          }
          for (std::int64_t l = len; l < lenp; ++l) out[l] = 0.0f;
        }
        for (std::int64_t jb = b0; jb < b1; ++jb) {
          const std::int64_t j0 = jb * DC;
          const int dc = static_cast<int>(std::min(DC, K9 - j0));
          for (int jj = 0; jj < dc; ++jj) {
            const std::int64_t kk = j0 + jj;
            float* row = colc + jj * PD;
            conv_col_row(s, x, kk / KK, (kk / s.k) % s.k, kk % s.k, p0, len, row);
            for (std::int64_t l = len; l < lenp; ++l) row[l] = 0.0f;
          }
          for (std::int64_t o0 = 0; o0 < M; o0 += DR) {
            const int dr = static_cast<int>(std::min(DR, M - o0));
            simd::kernel_dot<Cfg>(lenp, dyc + o0 * PD, PD, colc, PD, dw + o0 * K9 + j0, K9, dr, dc);
          }
        }
      }
    }
  }
}

template <class Cfg>
inline void conv2d_forward_with(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                                float* workspace, int threads) {
  constexpr std::int64_t MR = Cfg::MR;
  const std::int64_t M = s.c_out, K9 = s.patch();
  // dst[kk*MR + r] = w[o = ib*MR + r][kk]
  auto pack = [w, M, K9](std::int64_t ib, float* dst) {
    const std::int64_t mi = std::min<std::int64_t>(Cfg::MR, M - ib * MR);
    const float* rows = w + ib * MR * K9;
    for (std::int64_t kk = 0; kk < K9; ++kk)
      for (std::int64_t r = 0; r < MR; ++r) dst[kk * MR + r] = r < mi ? rows[r * K9 + kk] : 0.0f;
  };
  conv_implicit_gemm<Cfg>(s, x, pack, b, y, workspace, threads);
}

template <class Cfg>
inline void conv2d_backward_with(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx,
                                 float* dw, float* db, float* workspace, int threads) {
  if (dw || db) conv_weight_grad<Cfg>(s, x, dy, dw, db, workspace, threads);
  if (dx) {
    // dx = conv(dy, W') with W'[c][o][t'] = W[o][c][KK-1-t'] (t' = u'*K + v'; see above).
    constexpr std::int64_t MR = Cfg::MR;
    const ConvShape t{s.n, s.c_out, s.c_in, s.h, s.w, s.k};
    const std::int64_t KK = s.k * s.k, cin = s.c_in, cout = s.c_out;
    // dst[(o*KK + t')*MR + r] = w[o][c = ib*MR + r][KK-1-t']: per o, the source is the
    // contiguous MR x KK block w[o][ib*MR ..][..], the destination a contiguous KK x MR block.
    auto pack = [w, KK, cin, cout](std::int64_t ib, float* dst) {
      const std::int64_t mi = std::min<std::int64_t>(Cfg::MR, cin - ib * MR);
      for (std::int64_t o = 0; o < cout; ++o) {
        const float* src = w + (o * cin + ib * MR) * KK;
        float* out = dst + o * KK * MR;
        for (std::int64_t tp = 0; tp < KK; ++tp)
          for (std::int64_t r = 0; r < MR; ++r) out[tp * MR + r] = r < mi ? src[r * KK + (KK - 1 - tp)] : 0.0f;
      }
    };
    conv_implicit_gemm<Cfg>(t, dy, pack, nullptr, dx, workspace, threads);
  }
}

template <class Cfg>
inline std::size_t conv2d_workspace_floats_with(const ConvShape& s, int threads) {
  const std::int64_t kk = s.k * s.k;
  return std::max({conv_fwd_workspace_floats<Cfg>(s.c_out, s.c_in * kk, threads),
                   conv_fwd_workspace_floats<Cfg>(s.c_in, s.c_out * kk, threads),
                   conv_wgrad_workspace_floats<Cfg>(s, threads)});
}

}  // namespace impl

// Threads a convolution runs on (the workspace holds one chunk per thread).
inline int conv2d_threads() { return omp_get_max_threads(); }

// Floats of scratch the layer requests once (Arena): the packed weight and one
// pixel chunk per thread; shared by forward and backward.
inline std::size_t conv2d_workspace_floats(const ConvShape& s) {
  return impl::conv2d_workspace_floats_with<simd::DefaultConfig>(s, conv2d_threads());
}

// y = conv(x, w) + b (b may be null).
inline void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                           float* workspace) {
  impl::conv2d_forward_with<simd::DefaultConfig>(s, x, w, b, y, workspace, conv2d_threads());
}

// dx overwritten (may be null: the first layer of a network needs none);
// dw and db accumulated (db may be null).
inline void conv2d_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                            float* db, float* workspace) {
  impl::conv2d_backward_with<simd::DefaultConfig>(s, x, w, dy, dx, dw, db, workspace, conv2d_threads());
}

}  // namespace kiln::cpu
