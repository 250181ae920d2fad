// The convolution fast path: the body of conv2d.hpp that is compiled once per CPU
// code path. No include guard: conv2d.hpp includes it inside namespace kiln::cpu
// (the baseline, KILN_ISA_CFG = simd::DefaultConfig) and, with run-time dispatch,
// inside kiln::cpu::isa_avx2 / isa_avx512 under a `#pragma GCC target` region
// (isa.hpp), after gemm_fast.inl in the same namespace. Every name it defines lands
// in that namespace's impl; the table at the end is what the dispatch calls.
// Include only from conv2d.hpp.

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
// col is never materialised whole. Two paths (conv_use_padded):
//   padded planes (K > 1, images >= 16 wide): col row (c, u, v) is a pointer offset
//     into x copied with a zero halo (per band of tiles for forward / input grad);
//     forward / input grad: kernel_outer_rows over all K9 per tile; weight grad:
//     kernel_dot_rows (dot products along the pixels), threads own column blocks.
//   col rows (images under 16 wide, 1x1): conv_col_row(_any) writes rows of col for
//     a chunk of pixels; forward / input grad: a K-blocked GEMM over shared slices of
//     col (conv_implicit_gemm); weight grad: an outer-product GEMM over the pixels
//     with dy^T packed and dW as the accumulator (conv_weight_grad), or for 1x1 on
//     images over 8 x 8 the dot-product form (conv_weight_grad_dot).
// Every output element is summed in an order fixed by the shape alone, so
// results are identical run to run (and across thread counts).

namespace impl {

// out[0..count) = in[0..count), and fill: out[0..count) = 0. The segments of a
// col row are one image row (2 to 128 floats, a few for the halo); as plain
// loops GCC turns them into memmove/memset calls, whose call and dispatch cost
// more than such a copy (memmove was ~10% of a UNetSmall step). Vector moves
// of 16, 8 and 4 floats, then at most three scalars, in straight-line code.
// An empty asm that "changes" e: the compiler can no longer see the loop as a
// memcpy/memset idiom (and replace it by the call).
#ifndef KILN_OPAQUE
#if defined(__GNUC__) || defined(__clang__)
#define KILN_OPAQUE(var) __asm__("" : "+r"(var))
#else
#define KILN_OPAQUE(var) ((void)0)
#endif
#endif
KILN_ALWAYS_INLINE void copy_short(float* __restrict out, const float* __restrict in, std::int64_t count) {
  std::int64_t e = 0;
  for (; e + 16 <= count; e += 16) {
    simd::Vec<16>::type v;
    simd::load<16>(v, in + e);
    simd::store<16>(out + e, v);
    KILN_OPAQUE(e);
  }
  if (e + 8 <= count) {
    simd::Vec<8>::type v;
    simd::load<8>(v, in + e);
    simd::store<8>(out + e, v);
    e += 8;
  }
  if (e + 4 <= count) {
    simd::Vec<4>::type v;
    simd::load<4>(v, in + e);
    simd::store<4>(out + e, v);
    e += 4;
  }
  if (e < count) out[e] = in[e];
  if (e + 1 < count) out[e + 1] = in[e + 1];
  if (e + 2 < count) out[e + 2] = in[e + 2];
}
KILN_ALWAYS_INLINE void zero_short(float* __restrict out, std::int64_t count) {
  std::int64_t e = 0;
  const simd::Vec<16>::type z16{};
  for (; e + 16 <= count; e += 16) {
    simd::store<16>(out + e, z16);
    KILN_OPAQUE(e);
  }
  if (e + 8 <= count) {
    const simd::Vec<8>::type z8{};
    simd::store<8>(out + e, z8);
    e += 8;
  }
  if (e + 4 <= count) {
    const simd::Vec<4>::type z4{};
    simd::store<4>(out + e, z4);
    e += 4;
  }
  if (e < count) out[e] = 0.0f;
  if (e + 1 < count) out[e + 1] = 0.0f;
  if (e + 2 < count) out[e + 2] = 0.0f;
}

// dst[t] = col[(c*K + u)*K + v][q] for q = p0 + t, t < len:
//   x[n][c][i + u - p][j + v - p], 0 outside the image.
inline void conv_col_row(const ConvShape& s, const float* __restrict x, std::int64_t c, std::int64_t u, std::int64_t v,
                         std::int64_t p0, std::int64_t len, float* __restrict dst) {
  const std::int64_t p = s.pad(), H = s.h, W = s.w, HW = s.hw();
  std::int64_t n = p0 / HW, i = (p0 % HW) / W, j = p0 % W;
  for (std::int64_t t = 0; t < len;) {
    const std::int64_t seg = std::min(W - j, len - t);
    float* __restrict out = dst + t;
    const std::int64_t ii = i + u - p;
    if (ii < 0 || ii >= H) {
      zero_short(out, seg);
    } else {
      const float* __restrict row = x + ((n * s.c_in + c) * H + ii) * W;
      const std::int64_t shift = j + v - p;  // out[e] = row[shift + e] where 0 <= shift + e < W
      const std::int64_t lo = std::clamp<std::int64_t>(-shift, 0, seg);
      const std::int64_t hi = std::clamp<std::int64_t>(W - shift, lo, seg);
      zero_short(out, lo);
      copy_short(out + lo, row + shift + lo, hi - lo);
      zero_short(out + hi, seg - hi);
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

// Small images (K > 1, under 16 wide: the 8 x 8 and 4 x 4 levels): x is first
// copied into planes with a zero halo, xs[n][c][H + 2p][W + 2p] (1.2 MB for 16 x
// 512 x 4 x 4), so that a col row over whole image rows is a run of W-float copies
// with no bounds logic (conv_col_row's general segments cost ~3 ns a float at W = 4).
inline std::int64_t conv_small_pad_floats(const ConvShape& s) {
  if (s.k == 1) return 0;
  const std::int64_t p = s.pad();
  return s.n * s.c_in * (s.h + 2 * p) * (s.w + 2 * p) + 16;
}
// Inside a parallel region (omp for over the planes, with its barrier).
// dst[H + 2p][W + 2p] = the plane src[H][W] with a zero halo of p.
inline void conv_pad_plane(const ConvShape& s, const float* __restrict src, float* __restrict dst) {
  const std::int64_t p = s.pad(), H = s.h, W = s.w, Wp = W + 2 * p;
  zero_short(dst, p * Wp + p);
  for (std::int64_t i = 0; i < H; ++i) {
    float* row = dst + (i + p) * Wp + p;
    copy_short(row, src + i * W, W);
    zero_short(row + W, 2 * p);  // this row's right halo and the next row's left one
  }
  zero_short(dst + (H + p) * Wp + p, p * Wp - p);
}
inline void conv_small_pad(const ConvShape& s, const float* __restrict x, float* __restrict xs) {
  const std::int64_t p = s.pad(), plane = (s.h + 2 * p) * (s.w + 2 * p);
#pragma omp for schedule(static)
  for (std::int64_t nc = 0; nc < s.n * s.c_in; ++nc) conv_pad_plane(s, x + nc * s.hw(), xs + nc * plane);
}
// db[o] += sum over the batch of dy[n][o] (planes summed in float, then added in image order).
// Inside a parallel region (omp for, nowait).
inline void conv_bias_grad(const ConvShape& s, const float* dy, float* db) {
  const std::int64_t M = s.c_out, HW = s.hw();
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
template <int Wc>
KILN_ALWAYS_INLINE void copy_fixed(float* __restrict out, const float* __restrict in, std::int64_t count) {
  if constexpr (Wc == 4 || Wc == 8 || Wc == 16) {
    typename simd::Vec<Wc>::type v;
    simd::load<Wc>(v, in);
    simd::store<Wc>(out, v);
  } else {
    copy_short(out, in, count);
  }
}
// dst[t] = col[(c, u, v)][p0 + t] from the halo planes xs; p0 and len are multiples of W.
template <int Wc>
inline void conv_col_row_small_w(const ConvShape& s, const float* __restrict xs, std::int64_t c, std::int64_t u,
                                 std::int64_t v, std::int64_t p0, std::int64_t len, float* __restrict dst) {
  const std::int64_t W = Wc ? Wc : s.w, H = s.h, p = s.pad(), Wp = W + 2 * p, plane = (H + 2 * p) * Wp;
  std::int64_t r = p0 / W, i = r % H;
  const std::int64_t r_end = (p0 + len) / W;
  const float* src = xs + ((r / H) * s.c_in + c) * plane + (i + u) * Wp + v;
  const std::int64_t next_image = s.c_in * plane - H * Wp;
  for (; r < r_end; ++r) {
    copy_fixed<Wc>(dst, src, W);
    dst += W;
    src += Wp;
    if (++i == H) {
      i = 0;
      src += next_image;
    }
  }
}
// conv_col_row, through the halo planes when there are (xs) and the run is whole rows.
inline void conv_col_row_any(const ConvShape& s, const float* __restrict x, const float* __restrict xs, std::int64_t c,
                             std::int64_t u, std::int64_t v, std::int64_t p0, std::int64_t len, float* __restrict dst) {
  if (xs && p0 % s.w == 0 && len % s.w == 0) {
    if (s.w == 4) return conv_col_row_small_w<4>(s, xs, c, u, v, p0, len, dst);
    if (s.w == 8) return conv_col_row_small_w<8>(s, xs, c, u, v, p0, len, dst);
    return conv_col_row_small_w<0>(s, xs, c, u, v, p0, len, dst);
  }
  conv_col_row(s, x, c, u, v, p0, len, dst);
}

// The col-row forward / input gradient (images under 16 wide, 1x1 convolutions) is a
// K-blocked GEMM: each thread takes its own pixels (conv_thread_pixels); per chunk of
// PC of them and block of KC rows of col, it builds the KC x PC slice of col (~288 KiB:
// its L2), and every (MR x NR) tile of the chunk's output is one kernel call over the
// KC rows, accumulating into a chunk-local output ybuf[Mp][PC] (bias at the first
// block); after the last block ybuf is copied into y. A micro-panel of the weight
// (KC x MR) is reused for the chunk's PC / NR tiles, and the weight is streamed once
// per chunk, not once per 48 pixels as with whole-K9 slices (for 512 channels at
// 4 x 4 that was 9.4 MB per 48 pixels).
inline constexpr std::int64_t conv_col_kc = 256;
template <class Cfg>
inline std::int64_t conv_fwd_kc(std::int64_t k9) {
  return std::min(k9, conv_col_kc);
}
template <class Cfg>
inline std::int64_t conv_fwd_chunk(std::int64_t k9, std::int64_t P) {
  const std::int64_t pc = (72 * 1024 / conv_fwd_kc<Cfg>(k9)) / Cfg::NR * Cfg::NR;
  return std::min(std::clamp<std::int64_t>(pc, Cfg::NR, 64 * Cfg::NR), round_up(P, Cfg::NR));
}

// Per thread of the col-row forward: its col slice (KC x PC) and chunk output (Mp x PC).
template <class Cfg>
inline std::int64_t conv_fwd_thread_floats(const ConvShape& s) {
  const std::int64_t k9 = s.patch(), mp = round_up(s.c_out, Cfg::MR), pc = conv_fwd_chunk<Cfg>(k9, s.n * s.hw());
  return round_up(conv_fwd_kc<Cfg>(k9) * pc, 16) + round_up(mp * pc, 16) + 32;
}
template <class Cfg>
inline std::size_t conv_fwd_workspace_floats(const ConvShape& s, int threads) {
  const std::int64_t mp = round_up(s.c_out, Cfg::MR);
  return static_cast<std::size_t>(mp * s.patch() + mp + conv_small_pad_floats(s) + 16 * 4 +
                                  std::max(threads, 1) * conv_fwd_thread_floats<Cfg>(s));
}

// Pixels per chunk of the col-row weight gradient (the K of its GEMM): the packed
// dy^T chunk (Mp x PD) about 512 KiB, at most 2048 pixels.
template <class Cfg>
inline std::int64_t conv_wgrad_chunk(const ConvShape& s) {
  const std::int64_t mp = round_up(s.c_out, Cfg::MR), pd = (128 * 1024 / mp) / 16 * 16;
  return std::min(std::clamp<std::int64_t>(pd, 64, 2048), round_up(s.n * s.hw(), 16));
}

inline bool conv_wgrad_use_dot(const ConvShape& s) { return s.k == 1 && s.hw() > 64; }
template <class Cfg>
inline std::int64_t conv_wgrad_dot_chunk(const ConvShape& s) {
  const std::int64_t pd = (128 * 1024 / s.c_out) / 16 * 16;
  return std::min(std::clamp<std::int64_t>(pd, 128, 1024), round_up(s.n * s.hw(), 16));
}

template <class Cfg>
inline std::size_t conv_wgrad_workspace_floats(const ConvShape& s, int threads) {
  const std::int64_t pd = conv_wgrad_chunk<Cfg>(s), mp = round_up(s.c_out, Cfg::MR);
  const std::int64_t pdd = conv_wgrad_dot_chunk<Cfg>(s);
  const std::int64_t dot = threads * round_up((s.c_out + Cfg::DC) * pdd, 16) + 16;
  return static_cast<std::size_t>(
      std::max(mp * pd + threads * round_up(2 * Cfg::NR * pd, 16) + conv_small_pad_floats(s) + 16 * 4, dot));
}

// y[n][o][q] = bias[o] + sum_kk W[o][kk] * col[kk][q]: the forward pass of the
// convolution s (c_in -> c_out). pack(ib, dst) writes the weight's rows
// ib*MR .. ib*MR + MR - 1 as dst[kk*MR + r] = W[ib*MR + r][kk] (0 past c_out).
// Images at least this wide take the padded-plane path (conv_padded_gemm below).
inline constexpr std::int64_t conv_padded_min_width = 16;
inline bool conv_use_padded(const ConvShape& s) { return s.w >= conv_padded_min_width && s.k > 1; }

template <class Cfg, class PackWeight>
inline void conv_padded_gemm(const ConvShape& s, const float* x, PackWeight pack, const float* bias, float* y,
                             float* workspace, int threads);

// The pixels thread t of T computes in the col-row path: whole images when the batch
// splits evenly (the thread then also builds its images' halo planes, so the threads
// share nothing but the packed weight), else runs of whole NR-pixel tiles. Each thread
// builds its own col slices: no barrier inside the pass, and no col row read from the
// other core's cache (both cost 1.6x at the 8 x 8 level on a loaded 2-core VM).
struct ConvPixels {
  std::int64_t lo, hi;
  bool whole_images;
};
inline ConvPixels conv_thread_pixels(const ConvShape& s, std::int64_t nr, std::int64_t t, std::int64_t T) {
  const std::int64_t HW = s.hw(), P = s.n * HW;
  if (s.n % T == 0 || s.n >= 4 * T) return {s.n * t / T * HW, s.n * (t + 1) / T * HW, true};
  const std::int64_t tiles = ceil_div(P, nr);
  return {std::min(P, tiles * t / T * nr), std::min(P, tiles * (t + 1) / T * nr), false};
}

template <class Cfg, class PackWeight>
inline void conv_implicit_gemm(const ConvShape& s, const float* x, PackWeight pack, const float* bias, float* y,
                               float* workspace, int threads) {
  if (conv_use_padded(s)) return conv_padded_gemm<Cfg>(s, x, pack, bias, y, workspace, threads);
  constexpr std::int64_t MR = Cfg::MR, NR = Cfg::NR;
  const std::int64_t M = s.c_out, K9 = s.patch(), KK = s.k * s.k, HW = s.hw();
  const std::int64_t Mp = round_up(M, MR), mb = Mp / MR, KC = conv_fwd_kc<Cfg>(K9);
  const std::int64_t plane = s.k > 1 ? (s.h + 2 * s.pad()) * (s.w + 2 * s.pad()) : 0;
  float* pa = align64(workspace);
  float* pbias = align64(pa + Mp * K9);
  float* xs = s.k > 1 ? align64(pbias + Mp) : nullptr;
  float* per_thread = align64(xs ? xs + conv_small_pad_floats(s) : pbias + Mp);
  const std::int64_t thread_floats = conv_fwd_thread_floats<Cfg>(s);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const std::int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
    const ConvPixels px = conv_thread_pixels(s, NR, t, T);
#pragma omp for schedule(static) nowait
    for (std::int64_t ib = 0; ib < mb; ++ib) {
      pack(ib, pa + ib * K9 * MR);
      for (std::int64_t r = 0; r < MR; ++r) pbias[ib * MR + r] = bias && ib * MR + r < M ? bias[ib * MR + r] : 0.0f;
    }
    if (xs && px.whole_images) {
      for (std::int64_t nc = px.lo / HW * s.c_in; nc < px.hi / HW * s.c_in; ++nc)
        conv_pad_plane(s, x + nc * HW, xs + nc * plane);
    } else if (xs) {
#pragma omp for schedule(static) nowait
      for (std::int64_t nc = 0; nc < s.n * s.c_in; ++nc) conv_pad_plane(s, x + nc * HW, xs + nc * plane);
    }
#pragma omp barrier
    const std::int64_t PC = conv_fwd_chunk<Cfg>(K9, std::max<std::int64_t>(px.hi - px.lo, 1));
    float* buf = align64(per_thread + t * thread_floats);  // buf[k*PC + j] = col[k0 + k][p0 + j]
    float* ybuf = align64(buf + round_up(KC * PC, 16));    // ybuf[o*PC + j] = y[o][p0 + j]
    for (std::int64_t p0 = px.lo; p0 < px.hi; p0 += PC) {
      const std::int64_t len = std::min(PC, px.hi - p0), lenp = round_up(len, NR), ntiles = lenp / NR;
      for (std::int64_t k0 = 0; k0 < K9; k0 += KC) {
        const std::int64_t kc = std::min(KC, K9 - k0);
        for (std::int64_t k = 0; k < kc; ++k) {
          const std::int64_t kk = k0 + k;
          float* row = buf + k * PC;
          conv_col_row_any(s, x, xs, kk / KK, (kk / s.k) % s.k, kk % s.k, p0, len, row);
          zero_short(row + len, lenp - len);
        }
        for (std::int64_t ib = 0; ib < mb; ++ib)
          for (std::int64_t jt = 0; jt < ntiles; ++jt)
            simd::kernel_outer<Cfg>(kc, pa + (ib * K9 + k0) * MR, buf + jt * NR, PC, pbias + ib * MR,
                                    ybuf + ib * MR * PC + jt * NR, PC, k0 > 0);
      }
      // y[n][o][pix] = ybuf[o][q - p0] for the chunk's pixels q, image row-runs at a time.
      for (std::int64_t o = 0; o < M; ++o)
        for (std::int64_t j = 0; j < len;) {
          const std::int64_t q = p0 + j, n = q / HW, pix = q % HW, seg = std::min(HW - pix, len - j);
          copy_short(y + (n * M + o) * HW + pix, ybuf + o * PC + j, seg);
          j += seg;
        }
    }
  }
}

// ---- the padded-plane path (forward and input gradient, images >= 16 wide) -------
//
// The input is copied once into planes with a zero halo of p = K/2 on every side
// (Wp = W + 2p columns, Hp = H + 2p rows). On that grid, col row (c, u, v) at
// padded position q is xpad[c][q + (u - p)*Wp + (v - p)]: a pointer offset, so
// no col row is built at all. The GEMM runs over the padded positions of the H
// image rows (H * Wp per image, the 2p halo columns of each row computed and
// dropped: 2p/W more FLOPs, 3% at W = 64, 12.5% at 16), tiles of NR positions
// inside one image; tile columns in a halo column or past the image read
// neighbouring data or the zeroed margins and are dropped, never stored.

// Bands: the padded planes are never built whole (for 16 x 32 x 64^2 that was 9 MB
// written and read back from memory). A band is a run of at most TB tiles of one
// image; a thread builds the padded rows that band reads, for all channels, into
// its own buffer (about 256 KiB: it stays in L2), then runs the band's tiles. The
// tiles' values do not depend on the band (same kernel, same operands, same order).
struct PaddedBands {
  std::int64_t p, wp, span, tiles_per_image, tb, bands_per_image, rows, bplane;
};
template <class Cfg>
inline PaddedBands conv_padded_bands(const ConvShape& s) {
  PaddedBands b{};
  b.p = s.pad();
  b.wp = s.w + 2 * b.p;
  b.span = s.h * b.wp;
  b.tiles_per_image = ceil_div(b.span, Cfg::NR);
  const std::int64_t row_bytes = s.c_in * b.wp * 4, target = 256 * 1024;
  const std::int64_t rows_max = std::max<std::int64_t>(target / row_bytes, 1);
  const std::int64_t tb_max = std::max<std::int64_t>(1, (rows_max - 2 * b.p - 2) * b.wp / Cfg::NR);
  b.bands_per_image = ceil_div(b.tiles_per_image, tb_max);
  b.tb = ceil_div(b.tiles_per_image, b.bands_per_image);
  // Rows a band reads: positions [q_lo - p*wp - p, q_lo + tb*NR + p*wp + p) of the padded plane.
  b.rows = ceil_div(b.tb * Cfg::NR + 2 * (b.p * b.wp + b.p), b.wp) + 2;
  b.bplane = b.rows * b.wp;
  return b;
}

template <class Cfg>
inline std::size_t conv_padded_workspace_floats(const ConvShape& s, int threads) {
  const PaddedBands b = conv_padded_bands<Cfg>(s);
  const std::int64_t mp = round_up(s.c_out, Cfg::MR), k9 = s.patch();
  return static_cast<std::size_t>(mp * k9 + mp + 2 * k9 + threads * (16 + round_up(s.c_in * b.bplane + Cfg::NR, 16)) +
                                  16 * 8);
}

// band[c][r - r_lo][0..Wp): row r of the padded plane of x[n][c] (zeros outside the image).
inline void conv_pad_rows(const ConvShape& s, const float* x_n, std::int64_t r_lo, std::int64_t rows,
                          std::int64_t bplane, float* __restrict band) {
  const std::int64_t p = s.pad(), W = s.w, H = s.h, Wp = W + 2 * p, HW = s.hw();
  for (std::int64_t c = 0; c < s.c_in; ++c) {
    float* dst = band + c * bplane;
    const float* src = x_n + c * HW;
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t i = r_lo + r - p;  // image row
      float* row = dst + r * Wp;
      if (i < 0 || i >= H) {
        zero_short(row, Wp);
        continue;
      }
      zero_short(row, p);
      copy_short(row + p, src + i * W, W);
      zero_short(row + p + W, p);
    }
  }
}

template <class Cfg, class PackWeight>
inline void conv_padded_gemm(const ConvShape& s, const float* x, PackWeight pack, const float* bias, float* y,
                             float* workspace, int threads) {
  constexpr std::int64_t MR = Cfg::MR, NR = Cfg::NR;
  const std::int64_t M = s.c_out, C = s.c_in, K = s.k, KK = K * K, K9 = s.patch(), p = s.pad();
  const std::int64_t W = s.w, HW = s.hw();
  const std::int64_t Mp = round_up(M, MR), mb = Mp / MR;
  const PaddedBands bd = conv_padded_bands<Cfg>(s);
  const std::int64_t Wp = bd.wp, span = bd.span, tiles_per_image = bd.tiles_per_image;
  // Per thread: 16 zero floats (the first tile of an image reads p floats before its
  // row 0, for halo columns that are dropped), the band, NR floats past it.
  const std::int64_t bands = s.n * bd.bands_per_image, band_floats = 16 + round_up(C * bd.bplane + NR, 16);
  float* pa = align64(workspace);
  float* pbias = align64(pa + Mp * K9);
  auto* off = reinterpret_cast<std::int64_t*>(align64(pbias + Mp));  // K9 offsets (2 floats each)
  float* bufs = align64(reinterpret_cast<float*>(off + K9));
  for (std::int64_t kk = 0; kk < K9; ++kk) {
    const std::int64_t c = kk / KK, u = (kk / K) % K, v = kk % K;
    off[kk] = c * bd.bplane + (u - p) * Wp + (v - p);
  }
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
#pragma omp for schedule(static)
    for (std::int64_t ib = 0; ib < mb; ++ib) {
      pack(ib, pa + ib * K9 * MR);
      for (std::int64_t r = 0; r < MR; ++r) pbias[ib * MR + r] = bias && ib * MR + r < M ? bias[ib * MR + r] : 0.0f;
    }
    float* band = bufs + omp_get_thread_num() * band_floats + 16;
    zero_short(band - 16, 16);
#pragma omp for schedule(static)
    for (std::int64_t bi = 0; bi < bands; ++bi) {
      const std::int64_t n = bi / bd.bands_per_image, t_a = (bi % bd.bands_per_image) * bd.tb;
      const std::int64_t t_b = std::min(t_a + bd.tb, tiles_per_image);
      // Padded rows r_lo .. r_lo + rows - 1 cover every read of tiles t_a .. t_b - 1.
      const std::int64_t q_lo = p * Wp + t_a * NR;
      const std::int64_t r_lo = (q_lo - p * Wp - p) / Wp;  // q_lo - p*Wp - p >= 0
      conv_pad_rows(s, x + n * C * HW, r_lo, bd.rows, bd.bplane, band);
      zero_short(band + C * bd.bplane, NR);  // reads of the last tile past the last row
      for (std::int64_t t = t_a; t < t_b; ++t) {
        const std::int64_t q0 = p * Wp + t * NR;
        const float* b = band + (q0 - r_lo * Wp);
        const std::int64_t q_end = std::min(q0 + NR, p * Wp + span);
        for (std::int64_t ib = 0; ib < mb; ++ib) {
          const std::int64_t i0 = ib * MR, mi = std::min(MR, M - i0);
          alignas(64) float tile[MR * NR];
          simd::kernel_outer_rows<Cfg>(K9, pa + ib * K9 * MR, b, off, pbias + i0, tile, NR);
          // Store the runs of tile columns that are image pixels: padded (i + p, j + p) -> y[i][j].
          for (std::int64_t q = q0; q < q_end;) {
            const std::int64_t i = q / Wp - p, jp = q % Wp;
            const std::int64_t run_end = std::min(q_end, q - jp + p + W);  // end of this row's pixels
            if (jp < p) {
              q += p - jp;
              continue;
            }
            if (jp >= p + W) {
              q += Wp - jp;
              continue;
            }
            const std::int64_t len = run_end - q, j = jp - p;
            for (std::int64_t r = 0; r < mi; ++r)
              copy_short(y + (n * M + i0 + r) * HW + i * W + j, tile + r * NR + (q - q0), len);
            q = run_end;
          }
        }
      }
    }
  }
}

// The weight gradient on the same padded planes: with dy copied into rows of Wp
// (zero in the halo columns, so they add nothing) as dy_pad[n][o][t], t = the
// padded position minus p*Wp, t < L = round_up(H*Wp, 16),
//   dW[o][kk] += sum_n sum_t dy_pad[n][o][t] * xpad[n][c][p*Wp + t + off(kk)],
// kernel_dot_rows over pieces of at most 2048 positions; col row kk is again a
// pointer. Threads own column blocks of dW as in conv_weight_grad.
inline constexpr std::int64_t conv_padded_wgrad_piece = 2048;

template <class Cfg>
inline std::size_t conv_padded_wgrad_workspace_floats(const ConvShape& s) {
  const std::int64_t p = s.pad(), wp = s.w + 2 * p, plane = (s.h + 2 * p) * wp, L = round_up(s.h * wp, 16);
  return static_cast<std::size_t>(2 * s.patch() + round_up(p, 16) + s.n * s.c_in * plane + p + 32 + s.n * s.c_out * L +
                                  16 * 8);
}

template <class Cfg>
inline void conv_padded_weight_grad(const ConvShape& s, const float* x, const float* dy, float* dw, float* db,
                                    float* workspace, int threads) {
  constexpr std::int64_t DR = Cfg::DR, DC = Cfg::DC;
  const std::int64_t M = s.c_out, C = s.c_in, K = s.k, KK = K * K, K9 = s.patch(), p = s.pad();
  const std::int64_t H = s.h, W = s.w, HW = s.hw(), Wp = W + 2 * p, plane = (H + 2 * p) * Wp;
  const std::int64_t span = H * Wp, L = round_up(span, 16), blocks = ceil_div(K9, DC);
  auto* off = reinterpret_cast<std::int64_t*>(align64(workspace));
  float* front = align64(reinterpret_cast<float*>(off + K9));
  const std::int64_t front_len = round_up(p, 16), back_len = p + 32;
  float* xpad = front + front_len;
  float* dypad = align64(xpad + s.n * C * plane + back_len);  // [n][o][L]
  for (std::int64_t kk = 0; kk < K9; ++kk) {
    const std::int64_t c = kk / KK, u = (kk / K) % K, v = kk % K;
    off[kk] = c * plane + (u - p) * Wp + (v - p) + p * Wp;  // from the start of the span
  }
  for (std::int64_t e = 0; e < front_len; ++e) front[e] = 0.0f;
  for (std::int64_t e = 0; e < back_len; ++e) xpad[s.n * C * plane + e] = 0.0f;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    if (db) conv_bias_grad(s, dy, db);
#pragma omp for schedule(static) nowait
    for (std::int64_t nc = 0; nc < s.n * C; ++nc) conv_pad_plane(s, x + nc * HW, xpad + nc * plane);
      // dypad[n][o][i*Wp + p + j] = dy[n][o][i][j]; halo columns and the tail past span are 0.
#pragma omp for schedule(static)
    for (std::int64_t no = 0; no < s.n * M; ++no) {
      float* dst = dypad + no * L;
      const float* src = dy + no * HW;
      zero_short(dst, p);
      for (std::int64_t i = 0; i < H; ++i) {
        copy_short(dst + i * Wp + p, src + i * W, W);
        zero_short(dst + i * Wp + p + W, i + 1 < H ? 2 * p : p);
      }
      zero_short(dst + span, L - span);
    }
    if (dw) {
      const std::int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
      const std::int64_t b0 = blocks * t / T, b1 = blocks * (t + 1) / T;
      // Images shorter than a piece go G at a time through one kernel call (its
      // segments), so the lane reduction at the end of a call is paid once per G
      // images: at 16 x 16 (L = 288, 18 vector steps) it cost about as much as the FMAs.
      const std::int64_t gmax = std::max<std::int64_t>(1, conv_padded_wgrad_piece / L);
      const std::int64_t ngroups = ceil_div(s.n, gmax), G = ceil_div(s.n, ngroups);
      // Longer images: pieces of equal length (64 x 64: 3 x 1408, not 2 x 2048 + 128).
      const std::int64_t piece = round_up(ceil_div(L, ceil_div(L, conv_padded_wgrad_piece)), 16);
      for (std::int64_t n = 0; n < s.n; n += G) {
        const std::int64_t nseg = std::min(G, s.n - n);
        for (std::int64_t t0 = 0; t0 < L; t0 += piece) {
          const std::int64_t len = std::min(piece, L - t0);
          for (std::int64_t jb = b0; jb < b1; ++jb) {
            const std::int64_t j0 = jb * DC;
            const int dc = static_cast<int>(std::min(DC, K9 - j0));
            const float* rows[DC];
            for (int q = 0; q < DC; ++q) rows[q] = xpad + n * C * plane + off[j0 + (q < dc ? q : dc - 1)] + t0;
            for (std::int64_t o0 = 0; o0 < M; o0 += DR) {
              const int dr = static_cast<int>(std::min(DR, M - o0));
              simd::kernel_dot_rows<Cfg>(len, dypad + (n * M + o0) * L + t0, L, rows, dw + o0 * K9 + j0, K9, dr, dc,
                                         nseg, M * L, C * plane);
            }
          }
        }
      }
    }
  }
}

// The dot-product form for 1x1 convolutions on images larger than 8 x 8: there the
// outer-product form below is slower (64 -> 32 at 32 x 32: 47 -> 24 GFLOP/s), because
// with K9 = Cin and few output channels every colT row it builds serves only a few
// kernel calls. Threads own blocks of DC columns kk; per chunk of PD pixels a thread
// copies dy[:, chunk] and builds its DC col rows, then kernel_dot over DR x DC tiles.
template <class Cfg>
inline void conv_weight_grad_dot(const ConvShape& s, const float* x, const float* dy, float* dw, float* db,
                                 float* workspace, int threads) {
  constexpr std::int64_t DR = Cfg::DR, DC = Cfg::DC;
  const std::int64_t M = s.c_out, K9 = s.patch(), KK = s.k * s.k, HW = s.hw(), P = s.n * HW;
  const std::int64_t PD = conv_wgrad_dot_chunk<Cfg>(s);
  const std::int64_t per_thread = round_up((M + DC) * PD, 16);
  const std::int64_t blocks = ceil_div(K9, DC);
  float* base = align64(workspace);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    if (db) conv_bias_grad(s, dy, db);
    const std::int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
    const std::int64_t b0 = blocks * t / T, b1 = blocks * (t + 1) / T;  // this thread's columns of dW
    float* dyc = base + t * per_thread;                                 // dyc[o*PD + l] = dy[o][p0 + l]
    float* colc = dyc + M * PD;                                         // colc[jj*PD + l] = col[j0 + jj][p0 + l]
    if (dw && b0 < b1) {
      for (std::int64_t p0 = 0; p0 < P; p0 += PD) {
        const std::int64_t len = std::min(PD, P - p0), lenp = round_up(len, Cfg::VL);
        for (std::int64_t o = 0; o < M; ++o) {
          float* out = dyc + o * PD;
          for (std::int64_t l = 0; l < len;) {
            const std::int64_t q = p0 + l, n = q / HW, pix = q % HW, seg = std::min(HW - pix, len - l);
            copy_short(out + l, dy + (n * M + o) * HW + pix, seg);
            l += seg;
          }
          zero_short(out + len, lenp - len);
        }
        for (std::int64_t jb = b0; jb < b1; ++jb) {
          const std::int64_t j0 = jb * DC;
          const int dc = static_cast<int>(std::min(DC, K9 - j0));
          for (int jj = 0; jj < dc; ++jj) {
            const std::int64_t kk = j0 + jj;
            float* row = colc + jj * PD;
            conv_col_row(s, x, kk / KK, (kk / s.k) % s.k, kk % s.k, p0, len, row);
            zero_short(row + len, lenp - len);
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

// dW[o][kk] += sum_q dy[o][q] * col[kk][q];  db[o] += sum_q dy[o][q].
// Col-row path (images under 16 wide, 1x1): an outer-product GEMM whose K is the
// pixels, dW[o][j0 .. j0 + NR) += sum_q dyT[q][o] * colT[q][j0 .. j0 + NR), so the
// MR x NR tile of dW stays in registers over a whole chunk of pixels (no lane
// reductions, unlike the dot-product form kernel_dot, which at 4 x 4 and 8 x 8 paid
// one reduction per 256-512 pixels plus a scalar read-modify-write of dW). Per chunk
// of PD pixels, dy^T is packed once ([o-block][q][MR], shared); a thread owns column
// blocks of NR kk's: it builds their NR col rows, transposes them to colT[q][NR]
// (L2), and runs one kernel call per o-block with dW as the accumulator.
template <class Cfg>
inline void conv_weight_grad(const ConvShape& s, const float* x, const float* dy, float* dw, float* db,
                             float* workspace, int threads) {
  if (conv_use_padded(s)) return conv_padded_weight_grad<Cfg>(s, x, dy, dw, db, workspace, threads);
  if (conv_wgrad_use_dot(s)) return conv_weight_grad_dot<Cfg>(s, x, dy, dw, db, workspace, threads);
  constexpr std::int64_t MR = Cfg::MR, NR = Cfg::NR;
  const std::int64_t M = s.c_out, K9 = s.patch(), KK = s.k * s.k, HW = s.hw(), P = s.n * HW;
  const std::int64_t Mp = round_up(M, MR), mb = Mp / MR;
  const std::int64_t PD = conv_wgrad_chunk<Cfg>(s), blocks = ceil_div(K9, NR);
  const std::int64_t per_thread = round_up(2 * NR * PD, 16);
  float* dyt = align64(workspace);  // dyt[(ib*PD + l)*MR + r] = dy[o = ib*MR + r][p0 + l]
  float* bufs = align64(dyt + Mp * PD);
  float* xs = s.k > 1 ? align64(bufs + threads * per_thread) : nullptr;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    if (xs) conv_small_pad(s, x, xs);
    if (db) conv_bias_grad(s, dy, db);
    if (dw) {
      const std::int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
      const std::int64_t b0 = blocks * t / T, b1 = blocks * (t + 1) / T;  // this thread's columns of dW
      float* rows = bufs + t * per_thread;                                // rows[j*PD + l] = col[j0 + j][p0 + l]
      float* colt = rows + NR * PD;                                       // colt[l*NR + j] = the same
      for (std::int64_t p0 = 0; p0 < P; p0 += PD) {
        const std::int64_t len = std::min(PD, P - p0);
#pragma omp for schedule(static)
        for (std::int64_t ib = 0; ib < mb; ++ib) {
          float* dst = dyt + ib * PD * MR;
          for (std::int64_t r = 0; r < MR; ++r) {
            const std::int64_t o = ib * MR + r;
            if (o >= M) {
              for (std::int64_t l = 0; l < len; ++l) dst[l * MR + r] = 0.0f;
              continue;
            }
            for (std::int64_t l = 0; l < len;) {
              const std::int64_t q = p0 + l, n = q / HW, pix = q % HW, seg = std::min(HW - pix, len - l);
              const float* src = dy + (n * M + o) * HW + pix;
              for (std::int64_t e = 0; e < seg; ++e) dst[(l + e) * MR + r] = src[e];
              l += seg;
            }
          }
        }
        for (std::int64_t jb = b0; jb < b1; ++jb) {
          const std::int64_t j0 = jb * NR, nj = std::min(NR, K9 - j0);
          for (std::int64_t j = 0; j < nj; ++j) {
            const std::int64_t kk = j0 + j;
            conv_col_row_any(s, x, xs, kk / KK, (kk / s.k) % s.k, kk % s.k, p0, len, rows + j * PD);
          }
          for (std::int64_t l = 0; l < len; ++l) {
            float* out = colt + l * NR;
            for (std::int64_t j = 0; j < nj; ++j) out[j] = rows[j * PD + l];
            for (std::int64_t j = nj; j < NR; ++j) out[j] = 0.0f;
          }
          for (std::int64_t ib = 0; ib < mb; ++ib) {
            const std::int64_t i0 = ib * MR, mi = std::min(MR, M - i0);
            const float* a = dyt + ib * PD * MR;
            if (mi == MR && nj == NR) {
              simd::kernel_outer<Cfg>(len, a, colt, NR, nullptr, dw + i0 * K9 + j0, K9, true);
              continue;
            }
            alignas(64) float tile[MR * NR];
            simd::kernel_outer<Cfg>(len, a, colt, NR, nullptr, tile, NR, false);
            for (std::int64_t r = 0; r < mi; ++r)
              for (std::int64_t j = 0; j < nj; ++j) dw[(i0 + r) * K9 + j0 + j] += tile[r * NR + j];
          }
        }
#pragma omp barrier
      }
    }
  }
}

// ---- Winograd F(2x2, 3x3): the 3x3 forward and input gradient on even images ----
//
// Each 2 x 2 block of output pixels (a tile) is Y = A^T [ sum_c U_c (.) V_c ] A with
// V_c = B^T d_c B (d_c: the 4 x 4 input patch of channel c) and U_c = G g_c G^T (g_c: the
// 3 x 3 kernel): per tile and channel pair 16 multiplies instead of 36. The sum over c is a
// GEMM per position xi of the 4 x 4 transform: M[xi] (Cout x tiles) = U[xi] (Cout x Cin)
// V[xi] (Cin x tiles), run by kernel_outer with U packed like the direct path's weights.
// The error against the direct sum is a few ulps per term (tests: relative 1e-5 bound).
// Each thread takes its own tiles (chunks of TC), transforms its inputs and outputs
// itself; only the packed U is shared (built once per pass, one barrier).
// Measured (docs/cpu-path.md): 1.3-1.8x the direct path from 16 channels at 16 x 16 and up; at
// 8 x 8 and below (tile rows of 4 and 2) the transforms cost what the GEMM saves.
inline bool conv_use_winograd(const ConvShape& s) {
  return s.k == 3 && s.h % 2 == 0 && s.w % 2 == 0 && s.h >= 16 && s.w >= 16 && s.c_in >= 16 && s.c_out >= 8;
}
template <class Cfg>
inline std::int64_t conv_winograd_chunk(const ConvShape& s) {
  const std::int64_t tc = (96 * 1024 / (16 * s.c_in)) / Cfg::NR * Cfg::NR;
  const std::int64_t tiles = s.n * (s.h / 2) * (s.w / 2);
  return std::min(std::clamp<std::int64_t>(tc, Cfg::NR, 4 * Cfg::NR), round_up(tiles, Cfg::NR));
}
template <class Cfg>
inline std::int64_t conv_winograd_thread_floats(const ConvShape& s) {
  const std::int64_t tc = conv_winograd_chunk<Cfg>(s);
  return round_up(16 * s.c_in * tc, 16) + round_up(16 * Cfg::MR * tc, 16) + round_up(4 * (s.w + 2), 16) + 64;
}
template <class Cfg>
inline std::size_t conv_winograd_workspace_floats(const ConvShape& s, int threads) {
  const std::int64_t mp = round_up(s.c_out, Cfg::MR);
  return static_cast<std::size_t>(16 * mp * s.c_in + 16 * 4 +
                                  std::max(threads, 1) * conv_winograd_thread_floats<Cfg>(s));
}

// tap(o, c, t) is the 3 x 3 kernel entry t = u*3 + v of output channel o, input channel c.
template <class Cfg, class Tap>
inline void conv_winograd(const ConvShape& s, const float* x, Tap tap, const float* bias, float* y, float* workspace,
                          int threads) {
  constexpr std::int64_t MR = Cfg::MR, NR = Cfg::NR;
  const std::int64_t M = s.c_out, C = s.c_in, H = s.h, W = s.w, HW = s.hw();
  const std::int64_t th = H / 2, tw = W / 2, tiles = s.n * th * tw;
  const std::int64_t Mp = round_up(M, MR), mb = Mp / MR, TC = conv_winograd_chunk<Cfg>(s);
  float* up = align64(workspace);  // up[((xi * mb + ib) * C + c) * MR + r] = U[xi][ib*MR + r][c]
  float* per_thread = align64(up + 16 * Mp * C);
  const std::int64_t thread_floats = conv_winograd_thread_floats<Cfg>(s);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const std::int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
#pragma omp for schedule(static)
    for (std::int64_t o = 0; o < Mp; ++o) {
      const std::int64_t ib = o / MR, r = o % MR;
      for (std::int64_t c = 0; c < C; ++c) {
        float g[9], gt[4][3];
        for (int e = 0; e < 9; ++e) g[e] = o < M ? tap(o, c, e) : 0.0f;
        for (int j = 0; j < 3; ++j) {  // G g: rows 1, (1 1 1)/2, (1 -1 1)/2, 1
          gt[0][j] = g[j];
          gt[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
          gt[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
          gt[3][j] = g[6 + j];
        }
        for (int i = 0; i < 4; ++i) {  // (G g) G^T
          const float u4[4] = {gt[i][0], 0.5f * (gt[i][0] + gt[i][1] + gt[i][2]),
                               0.5f * (gt[i][0] - gt[i][1] + gt[i][2]), gt[i][2]};
          for (int j = 0; j < 4; ++j) up[(((i * 4 + j) * mb + ib) * C + c) * MR + r] = u4[j];
        }
      }
    }
    const std::int64_t nt = ceil_div(tiles, NR);
    const std::int64_t lo = std::min(tiles, nt * t / T * NR), hi = std::min(tiles, nt * (t + 1) / T * NR);
    float* v = align64(per_thread + t * thread_floats);  // v[(xi * C + c) * TC + j]
    float* m = align64(v + 16 * C * TC);                 // m[(xi * MR + r) * TC + j]
    float* rows = align64(m + 16 * MR * TC);             // 4 input rows with a zero column each side
    const float zero_bias[MR] = {};
    for (std::int64_t t0 = lo; t0 < hi; t0 += TC) {
      const std::int64_t tc = std::min(TC, hi - t0), tcp = round_up(tc, NR);
      // V = B^T d B for the chunk's tiles, a run of one tile row at a time.
      for (std::int64_t q = t0; q < t0 + tc;) {
        const std::int64_t img = q / (th * tw), ti = (q / tw) % th, tj0 = q % tw;
        const std::int64_t run = std::min(tw - tj0, t0 + tc - q), j0 = q - t0;
        for (std::int64_t c = 0; c < C; ++c) {
          const float* plane = x + (img * C + c) * HW;
          for (int i = 0; i < 4; ++i) {
            const std::int64_t yy = 2 * ti - 1 + i;
            float* row = rows + i * (W + 2);
            if (yy < 0 || yy >= H) {
              zero_short(row + 2 * tj0, 2 * run + 2);
            } else {
              const std::int64_t a = 2 * tj0 - 1, b = 2 * (tj0 + run) + 1;  // columns a .. b - 1 (with the halo)
              const std::int64_t a0 = std::max<std::int64_t>(a, 0), b0 = std::min(b, W);
              if (a < 0) row[0] = 0.0f;
              copy_short(row + a0 + 1, plane + yy * W + a0, b0 - a0);
              if (b > W) row[W + 1] = 0.0f;
            }
          }
          const float* __restrict r0 = rows;
          const float* __restrict r1 = rows + (W + 2);
          const float* __restrict r2 = rows + 2 * (W + 2);
          const float* __restrict r3 = rows + 3 * (W + 2);
          float* __restrict vc = v + c * TC + j0;
          const std::int64_t xs = C * TC;  // between xi planes
#pragma omp simd
          for (std::int64_t e = 0; e < run; ++e) {
            const std::int64_t k = 2 * (tj0 + e);  // column 2*tj - 1 at k (the zero column shifts by one)
            float d[4][4];
            for (int j = 0; j < 4; ++j) {
              d[0][j] = r0[k + j];
              d[1][j] = r1[k + j];
              d[2][j] = r2[k + j];
              d[3][j] = r3[k + j];
            }
            float bd[4][4];  // B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3
            for (int j = 0; j < 4; ++j) {
              bd[0][j] = d[0][j] - d[2][j];
              bd[1][j] = d[1][j] + d[2][j];
              bd[2][j] = d[2][j] - d[1][j];
              bd[3][j] = d[1][j] - d[3][j];
            }
            for (int i = 0; i < 4; ++i) {  // (B^T d) B: the same on the columns
              vc[(i * 4 + 0) * xs + e] = bd[i][0] - bd[i][2];
              vc[(i * 4 + 1) * xs + e] = bd[i][1] + bd[i][2];
              vc[(i * 4 + 2) * xs + e] = bd[i][2] - bd[i][1];
              vc[(i * 4 + 3) * xs + e] = bd[i][1] - bd[i][3];
            }
          }
        }
        q += run;
      }
      if (tcp > tc)
        for (std::int64_t xc = 0; xc < 16 * C; ++xc) zero_short(v + xc * TC + tc, tcp - tc);
      for (std::int64_t ib = 0; ib < mb; ++ib) {
        for (int xi = 0; xi < 16; ++xi)
          for (std::int64_t jt = 0; jt < tcp / NR; ++jt)
            simd::kernel_outer<Cfg>(C, up + (xi * mb + ib) * C * MR, v + xi * C * TC + jt * NR, TC, zero_bias,
                                    m + xi * MR * TC + jt * NR, TC, false);
        // Y = A^T M A (A^T rows: 1 1 1 0, 0 1 -1 -1), plus the bias.
        const std::int64_t mi = std::min(MR, M - ib * MR);
        for (std::int64_t r = 0; r < mi; ++r) {
          const std::int64_t o = ib * MR + r;
          const float bo = bias ? bias[o] : 0.0f;
          const float* __restrict mr = m + r * TC;
          const std::int64_t xs = MR * TC;
          for (std::int64_t q = t0; q < t0 + tc;) {
            const std::int64_t img = q / (th * tw), ti = (q / tw) % th, tj0 = q % tw;
            const std::int64_t run = std::min(tw - tj0, t0 + tc - q), j0 = q - t0;
            float* __restrict y0 = y + ((img * M + o) * H + 2 * ti) * W;
            float* __restrict y1 = y0 + W;
#pragma omp simd
            for (std::int64_t e = 0; e < run; ++e) {
              float mm[4][4];
              for (int xi = 0; xi < 16; ++xi) mm[xi / 4][xi % 4] = mr[xi * xs + j0 + e];
              float a0[4], a1[4];
              for (int j = 0; j < 4; ++j) {
                a0[j] = mm[0][j] + mm[1][j] + mm[2][j];
                a1[j] = mm[1][j] - mm[2][j] - mm[3][j];
              }
              const std::int64_t col = 2 * (tj0 + e);
              y0[col] = bo + (a0[0] + a0[1] + a0[2]);
              y0[col + 1] = bo + (a0[1] - a0[2] - a0[3]);
              y1[col] = bo + (a1[0] + a1[1] + a1[2]);
              y1[col + 1] = bo + (a1[1] - a1[2] - a1[3]);
            }
            q += run;
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
    if (mi == MR) {
      for (std::int64_t kk = 0; kk < K9; ++kk)
#pragma GCC unroll 16
        for (std::int64_t r = 0; r < MR; ++r) dst[kk * MR + r] = rows[r * K9 + kk];
      return;
    }
    for (std::int64_t kk = 0; kk < K9; ++kk)
      for (std::int64_t r = 0; r < MR; ++r) dst[kk * MR + r] = r < mi ? rows[r * K9 + kk] : 0.0f;
  };
  if (conv_use_winograd(s)) {
    const auto tap = [w, K9](std::int64_t o, std::int64_t c, int t) { return w[o * K9 + c * 9 + t]; };
    return conv_winograd<Cfg>(s, x, tap, b, y, workspace, threads);
  }
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
        if (mi == MR) {  // the common case, without the per-element test (it cost ~10% of a 512-channel 4 x 4 pass)
          for (std::int64_t tp = 0; tp < KK; ++tp)
#pragma GCC unroll 16
            for (std::int64_t r = 0; r < MR; ++r) out[tp * MR + r] = src[r * KK + (KK - 1 - tp)];
          continue;
        }
        for (std::int64_t tp = 0; tp < KK; ++tp)
          for (std::int64_t r = 0; r < MR; ++r) out[tp * MR + r] = r < mi ? src[r * KK + (KK - 1 - tp)] : 0.0f;
      }
    };
    if (conv_use_winograd(t)) {
      // W'[c][o][t'] = W[o][c][8 - t'] (output channel c of the transposed pass, input channel o)
      const auto tap = [w, cin](std::int64_t c, std::int64_t o, int tp) { return w[(o * cin + c) * 9 + (8 - tp)]; };
      return conv_winograd<Cfg>(t, dy, tap, nullptr, dx, workspace, threads);
    }
    conv_implicit_gemm<Cfg>(t, dy, pack, nullptr, dx, workspace, threads);
  }
}

template <class Cfg>
inline std::size_t conv2d_forward_workspace_floats_with(const ConvShape& s, int threads);

// Forward, input gradient (the transposed shape's forward) and weight gradient: each pass
// counts only the path it takes.
template <class Cfg>
inline std::size_t conv2d_workspace_floats_with(const ConvShape& s, int threads) {
  const ConvShape transposed{s.n, s.c_out, s.c_in, s.h, s.w, s.k};
  return std::max({conv2d_forward_workspace_floats_with<Cfg>(s, threads),
                   conv2d_forward_workspace_floats_with<Cfg>(transposed, threads),
                   conv_use_padded(s) ? conv_padded_wgrad_workspace_floats<Cfg>(s) : std::size_t{0},
                   conv_wgrad_workspace_floats<Cfg>(s, threads)});
}

// The forward pass alone (an eval plan): neither the transposed pass nor the weight gradient,
// and only the path conv_implicit_gemm takes (the padded one holds a few rows per thread; the
// other a padded copy of the input, for images narrower than conv_padded_min_width).
template <class Cfg>
inline std::size_t conv2d_forward_workspace_floats_with(const ConvShape& s, int threads) {
  if (conv_use_winograd(s)) return conv_winograd_workspace_floats<Cfg>(s, threads);
  return conv_use_padded(s) ? conv_padded_workspace_floats<Cfg>(s, threads)
                            : conv_fwd_workspace_floats<Cfg>(s, threads);
}

}  // namespace impl

// The entry points of this copy, for the dispatch (conv2d.hpp: conv_kernels()); with
// KILN_CPU_SEPARATE only declared, outside its one unit (kiln/cpu/separate.hpp).
#if KILN_CPU_ENTRY_DEFINITIONS
KILN_CPU_TABLE ConvKernels conv_kernel_table{&impl::conv2d_forward_with<KILN_ISA_CFG>,
                                             &impl::conv2d_backward_with<KILN_ISA_CFG>,
                                             &impl::conv2d_workspace_floats_with<KILN_ISA_CFG>};
#else
KILN_CPU_TABLE ConvKernels conv_kernel_table;
#endif
