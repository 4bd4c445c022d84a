// The GPT-2 flavour's transformer blocks (LayerNorm, causal attention, GELU MLP), forward and
// backward, for training on CPU in bfloat16 autocast. genforge/cpu/fused_gpt.py builds this file
// on first use and wraps it in one autograd.Function.
//
// The arithmetic is autocast's: bf16 matmuls (ATen's, so oneDNN's kernels), fp32 LayerNorm,
// softmax and residual stream; attention's own products are fp32 on bf16 q, k and v. What differs
// from running the Python modules is the number of passes over memory and of dispatcher calls:
// each LayerNorm writes its bf16 output directly and takes the residual add with it, attention
// runs head by head in a cache-sized workspace on c_attn's output as it lies (no permuted copies,
// no scores in memory but the probabilities kept for the backward), GELU and its derivative come
// from one table lookup in the forward so that the backward is one multiply, buffers are reused
// from layer to layer, and there is no Python between the ops.
#include <ATen/ATen.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;
using bf16 = uint16_t;

inline float bf2f(bf16 h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline bf16 f2bf(float f) {  // round to nearest even, as PyTorch does; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return bf16(f != f ? 0x7FC0u : r);
}

constexpr int64_t kChunk = 64;  // floats computed on the stack, then stored as bf16 together

// dst[0..n) = src[0..n) in bf16, rounded to nearest even. With AVX512-BF16 one instruction converts
// 32 (denormal inputs flush to zero there); elsewhere the bit arithmetic above, vectorized.
inline void store_bf16(const float* __restrict src, bf16* __restrict dst, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512BF16__)
  for (; i + 32 <= n; i += 32) {
    __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
    _mm512_storeu_si512(static_cast<void*>(dst + i), reinterpret_cast<__m512i>(v));
  }
#endif
  for (; i < n; ++i) dst[i] = f2bf(src[i]);
}

// Sum of f(j) for j < n, kept in 16 lanes and folded as a tree at the end: a compiler's
// own `omp simd` reduction folds its lanes one by one, ~50 cycles per row of these short rows.
inline float fold_sum(const float* acc) {
#if defined(__AVX512F__)
  return _mm512_reduce_add_ps(_mm512_load_ps(acc));
#else
  float s[8];
  for (int k = 0; k < 8; ++k) s[k] = acc[k] + acc[k + 8];
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
#endif
}

template <class F>
inline float lane_sum(int64_t n, F f) {
  alignas(64) float acc[16] = {};
  int64_t j0 = 0;
  for (; j0 + 16 <= n; j0 += 16)
    for (int k = 0; k < 16; ++k) acc[k] += f(j0 + k);
  for (; j0 < n; ++j0) acc[j0 % 16] += f(j0);
  return fold_sum(acc);
}

inline float exp_approx(float x) {  // Cephes' expf: relative error ~1e-7, branch-free (vectorizes)
  x = std::min(std::max(x, -87.0f), 88.0f);
  // k = round(x / ln 2) by the float trick (exact for |k| < 2^22): floorf would not vectorize
  const float magic = 12582912.0f;  // 1.5 * 2^23
  float k = (x * 1.44269504088896341f + magic) - magic;
  float r = x - k * 0.693359375f + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t bits = uint32_t(int32_t(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

const bf16* cbf(const Tensor& t) { return reinterpret_cast<const bf16*>(t.const_data_ptr<at::BFloat16>()); }
bf16* mbf(Tensor& t) { return reinterpret_cast<bf16*>(t.mutable_data_ptr<at::BFloat16>()); }

// xs = x (+ a); xn = LayerNorm(xs) * w (+ b) in bf16, with each row's mean and 1/std.
std::tuple<Tensor, Tensor, Tensor, Tensor> ln_fwd(const Tensor& x, const Tensor& a, const Tensor& w,
                                                  const Tensor& b, double eps) {
  const int64_t N = x.size(0), C = x.size(1);
  Tensor xs = a.defined() ? at::empty_like(x) : x;
  Tensor xn = at::empty({N, C}, x.options().dtype(at::kBFloat16));
  Tensor mean = at::empty({N}, x.options()), rstd = at::empty({N}, x.options());
  const float* px = x.const_data_ptr<float>();
  const bf16* pa = a.defined() ? cbf(a) : nullptr;
  float* ps = xs.mutable_data_ptr<float>();
  const float* pw = w.const_data_ptr<float>();
  const float* pb = b.defined() ? b.const_data_ptr<float>() : nullptr;
  bf16* pn = mbf(xn);
  float* pm = mean.mutable_data_ptr<float>();
  float* pr = rstd.mutable_data_ptr<float>();
  at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      float* __restrict s = ps + n * C;
      if (pa) {
        const float* __restrict xr = px + n * C;
        const bf16* __restrict ar = pa + n * C;
        for (int64_t c = 0; c < C; ++c) s[c] = xr[c] + bf2f(ar[c]);
      }
      const float mu = lane_sum(C, [&](int64_t c) { return s[c]; }) / C;
      const float var = lane_sum(C, [&](int64_t c) { return (s[c] - mu) * (s[c] - mu); }) / C;
      const float r = 1.0f / std::sqrt(var + float(eps));
      alignas(64) float buf[kChunk];
      for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
        const int64_t m = std::min(kChunk, C - c0);
        for (int64_t c = 0; c < m; ++c) buf[c] = (s[c0 + c] - mu) * r * pw[c0 + c] + (pb ? pb[c0 + c] : 0.f);
        store_bf16(buf, pn + n * C + c0, m);
      }
      pm[n] = mu;
      pr[n] = r;
    }
  });
  return {xs, xn, mean, rstd};
}

// dx += the gradient of LayerNorm's input given dxn (bf16) of its output; returns (dw, db).
std::tuple<Tensor, Tensor> ln_bwd(const Tensor& dxn, const Tensor& xs, const Tensor& mean, const Tensor& rstd,
                                  const Tensor& w, bool bias, Tensor& dx, Tensor& xhat) {
  const int64_t N = xs.size(0), C = xs.size(1);
  const bf16* pd = cbf(dxn);
  const float* px = xs.const_data_ptr<float>();
  const float* pm = mean.const_data_ptr<float>();
  const float* pr = rstd.const_data_ptr<float>();
  const float* pw = w.const_data_ptr<float>();
  float* pdx = dx.mutable_data_ptr<float>();
  float* pxh = xhat.mutable_data_ptr<float>();  // (N, C) fp32 workspace: the normalized input
  at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const float mu = pm[n], r = pr[n];
      const float* __restrict x = px + n * C;
      const bf16* __restrict d = pd + n * C;
      float* __restrict xh = pxh + n * C;
      for (int64_t c = 0; c < C; ++c) xh[c] = (x[c] - mu) * r;
      const float m1 = lane_sum(C, [&](int64_t c) { return bf2f(d[c]) * pw[c]; }) / C;
      const float m2 = lane_sum(C, [&](int64_t c) { return bf2f(d[c]) * pw[c] * xh[c]; }) / C;
      float* __restrict o = pdx + n * C;
      for (int64_t c = 0; c < C; ++c) o[c] += r * (bf2f(d[c]) * pw[c] - m1 - xh[c] * m2);
    }
  });
  Tensor dw = at::zeros({C}, xs.options());
  Tensor db = bias ? at::zeros({C}, xs.options()) : Tensor();
  float* __restrict pdw = dw.mutable_data_ptr<float>();
  for (int64_t n = 0; n < N; ++n) {  // rows in order: the sums do not depend on the thread count
    const bf16* __restrict d = pd + n * C;
    const float* __restrict xh = pxh + n * C;
    for (int64_t c = 0; c < C; ++c) pdw[c] += bf2f(d[c]) * xh[c];
  }
  if (bias) {
    float* __restrict pdb = db.mutable_data_ptr<float>();
    for (int64_t n = 0; n < N; ++n) {
      const bf16* __restrict d = pd + n * C;
      for (int64_t c = 0; c < C; ++c) pdb[c] += bf2f(d[c]);
    }
  }
  return {dw, db};
}

// GELU of bf16 h and its derivative, both bf16: the backward is then one multiply. A bf16 input
// has 65,536 values, so both results come from a table (256 KB, built once in double precision:
// correctly rounded, tails included), looked up at ~2x the speed of computing them in fp32.
// Exact: x Phi(x); tanh: GPT-2's 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
const uint32_t* gelu_table(bool tanh_approx) {
  auto build = [](bool tanh_form) {
    std::vector<uint32_t> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) {
      const double x = bf2f(bf16(i));
      double g, d;
      if (tanh_form) {
        // 0.5 (1 + tanh(u)) = sigmoid(2u), without 1 + tanh's cancellation in the left tail
        const double k = std::sqrt(2.0 / M_PI), u = k * (x + 0.044715 * x * x * x);
        const double sg = 1.0 / (1.0 + std::exp(-2.0 * u));
        g = x * sg;
        d = sg + 2.0 * x * sg * (1.0 - sg) * k * (1.0 + 3 * 0.044715 * x * x);
      } else {
        const double cdf = 0.5 * std::erfc(-x / std::sqrt(2.0));
        g = x * cdf;
        d = cdf + x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
      }
      if (std::isinf(x)) g = x > 0 ? x : -0.0, d = x > 0 ? 1.0 : 0.0;
      t[i] = (uint32_t(f2bf(float(g))) << 16) | f2bf(float(d));
    }
    return t;
  };
  static const std::vector<uint32_t> exact = build(false), tanh_form = build(true);  // thread-safe, once
  return tanh_approx ? tanh_form.data() : exact.data();
}

std::tuple<Tensor, Tensor> gelu_fwd(const Tensor& h, bool tanh_approx) {
  Tensor g = at::empty_like(h), dg = at::empty_like(h);
  const int64_t n = h.numel();
  const bf16* ph_ = cbf(h);
  bf16* pg_ = mbf(g);
  bf16* pdg_ = mbf(dg);
  const uint32_t* table = gelu_table(tanh_approx);
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    const bf16* __restrict ph = ph_;
    bf16* __restrict pg = pg_;
    bf16* __restrict pdg = pdg_;
    for (int64_t i = begin; i < end; ++i) {
      const uint32_t e = table[ph[i]];
      pg[i] = bf16(e >> 16);
      pdg[i] = bf16(e);
    }
  });
  return {g, dg};
}

// a *= b, both bf16 (the product rounded once, as ATen's mul does), in one pass.
void mul_bf16_(Tensor& a, const Tensor& b) {
  const int64_t n = a.numel();
  bf16* pa_ = mbf(a);
  const bf16* pb_ = cbf(b);
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    alignas(64) float buf[kChunk];
    for (int64_t i0 = begin; i0 < end; i0 += kChunk) {
      const int64_t m = std::min(kChunk, end - i0);
      const bf16* __restrict x = pa_ + i0;
      const bf16* __restrict y = pb_ + i0;
      for (int64_t j = 0; j < m; ++j) buf[j] = bf2f(x[j]) * bf2f(y[j]);
      store_bf16(buf, pa_ + i0, m);
    }
  });
}

// Causal attention, one (batch, head) at a time, in fp32 from the bf16 q, k and v of c_attn's
// output: S = q k^T scale, P = softmax of S over columns j <= i, y = P v. Each head's operands sit
// in a small fp32 workspace (~100 KB for 64 positions), so the products, the softmax and their
// backward run from cache, and q, k, v and their gradients are read and written in c_attn's own
// (B, T, 3, n_head, hs) layout: no permuted copies. The products work on 16-float vectors (GCC's
// and Clang's vector extensions: AVX-512, AVX2 or SSE, as the target has) with kRows rows of the
// result in registers, and skip the masked triangle 16 columns at a time.
typedef float vec16 __attribute__((vector_size(64)));
inline vec16 vload(const float* p) {
  vec16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void vstore(float* p, vec16 v) { std::memcpy(p, &v, sizeof v); }
inline int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }
constexpr int64_t kRows = 4;  // rows per register block: row counts are padded to a multiple of 16

// out[i][j] = sum over d < K of a[i][d] bt[d][j], for rows i < rows and the 16-column chunks that
// reach row i's block's last row (the lower triangle, and what shares its chunks).
void abt_lower(const float* a, int64_t lda, const float* bt, int64_t ldb, int64_t K, float* out, int64_t ldo,
               int64_t rows) {
  for (int64_t i0 = 0; i0 < rows; i0 += kRows) {
    const float* ar = a + i0 * lda;
    for (int64_t j0 = 0; j0 < round16(std::min(i0 + kRows, rows)); j0 += 16) {
      vec16 c0{}, c1{}, c2{}, c3{};
      for (int64_t d = 0; d < K; ++d) {
        const vec16 b = vload(bt + d * ldb + j0);
        c0 += ar[d] * b, c1 += ar[lda + d] * b, c2 += ar[2 * lda + d] * b, c3 += ar[3 * lda + d] * b;
      }
      float* o = out + i0 * ldo + j0;
      vstore(o, c0), vstore(o + ldo, c1), vstore(o + 2 * ldo, c2), vstore(o + 3 * ldo, c3);
    }
  }
}

// With `a` lower triangular (zero past the diagonal): out = a b, row i summing over j <= i, or
// (transposed) out = a^T b, row i summing over j >= i, for rows i < rows and columns c < K (a
// multiple of 16). a^T is read along a's rows, four neighbouring columns at a time: no transposed
// copy (one took 44 % of the backward's time).
template <bool kTransposed>
void tri_ab(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t K, float* out, int64_t ldo, int64_t rows) {
  const int64_t s = kTransposed ? 1 : lda;  // from one result row's coefficient in `a` to the next's
  for (int64_t i0 = 0; i0 < rows; i0 += kRows) {
    const int64_t lo = kTransposed ? i0 : 0, hi = kTransposed ? rows : std::min(i0 + kRows, rows);
    for (int64_t c = 0; c < K; c += 16) {
      vec16 c0{}, c1{}, c2{}, c3{};
      for (int64_t j = lo; j < hi; ++j) {
        const vec16 v = vload(b + j * ldb + c);
        const float* aj = kTransposed ? a + j * lda + i0 : a + i0 * lda + j;
        c0 += aj[0] * v, c1 += aj[s] * v, c2 += aj[2 * s] * v, c3 += aj[3 * s] * v;
      }
      float* o = out + i0 * ldo + c;
      vstore(o, c0), vstore(o + ldo, c1), vstore(o + 2 * ldo, c2), vstore(o + 3 * ldo, c3);
    }
  }
}

// The workspace of one head: T rows padded to Tp = round16(T), head size hs to hsp = round16(hs);
// the padding stays zero.
struct HeadSpace {
  int64_t T, Tp, hs, hsp;
  std::vector<float> buf;
  float *q, *k, *v, *d, *o, *S, *D;  // q, k, v, dy, a result: (Tp, hsp) or (hsp, Tp); S, D: (Tp, Tp)
  HeadSpace(int64_t T_, int64_t hs_) : T(T_), Tp(round16(T_)), hs(hs_), hsp(round16(hs_)) {
    buf.assign(5 * Tp * hsp + 2 * Tp * Tp, 0.f);
    q = buf.data(), k = q + Tp * hsp, v = k + Tp * hsp, d = v + Tp * hsp, o = d + Tp * hsp;
    S = o + Tp * hsp, D = S + Tp * Tp;
  }
  // rows t < T of a bf16 matrix (row stride ld) into `dst` as rows (Tp, hsp), or transposed (hsp, Tp)
  void load(const bf16* src, int64_t ld, float* dst, bool transposed) const {
    for (int64_t t = 0; t < T; ++t) {
      const bf16* __restrict r = src + t * ld;
      if (transposed) {
        for (int64_t c = 0; c < hs; ++c) dst[c * Tp + t] = bf2f(r[c]);
      } else {
        float* __restrict o = dst + t * hsp;
        for (int64_t c = 0; c < hs; ++c) o[c] = bf2f(r[c]);
      }
    }
  }
  void store(const float* src, bf16* dst, int64_t ld) const {  // rows t < T, columns c < hs
    for (int64_t t = 0; t < T; ++t) store_bf16(src + t * hsp, dst + t * ld, hs);
  }
};

// f(w, bh, b, h) for each head h of each batch row b (bh = b * n_head + h), the heads shared out
// among the threads, each with a workspace w of its own.
template <class F>
void each_head(int64_t B, int64_t n_head, int64_t T, int64_t hs, F f) {
  at::parallel_for(0, B * n_head, 1, [&](int64_t begin, int64_t end) {
    HeadSpace w(T, hs);
    for (int64_t bh = begin; bh < end; ++bh) f(w, bh, bh / n_head, bh % n_head);
  });
}

// qkv (B*T, 3C) bf16, c_attn's output -> y (B*T, C) bf16, the heads side by side as c_proj takes
// them, and P (B*n_head, T, T) fp32, the probabilities (zero above the diagonal) for the backward.
std::tuple<Tensor, Tensor> attention_fwd(const Tensor& qkv, int64_t B, int64_t n_head) {
  const int64_t N = qkv.size(0), T = N / B, C = qkv.size(1) / 3, hs = C / n_head;
  const float sc = float(1.0 / std::sqrt(double(hs)));
  Tensor y = at::empty({N, C}, qkv.options());
  Tensor P = at::empty({B * n_head, T, T}, qkv.options().dtype(at::kFloat));
  const bf16* pqkv = cbf(qkv);
  bf16* py = mbf(y);
  float* pp = P.mutable_data_ptr<float>();
  each_head(B, n_head, T, hs, [&](HeadSpace& w, int64_t bh, int64_t b, int64_t h) {
    const int64_t Tp = w.Tp, hsp = w.hsp;
    const bf16* src = pqkv + b * T * 3 * C + h * hs;
    w.load(src, 3 * C, w.q, false), w.load(src + C, 3 * C, w.k, true), w.load(src + 2 * C, 3 * C, w.v, false);
    abt_lower(w.q, hsp, w.k, Tp, hsp, w.S, Tp, T);
    for (int64_t i = 0; i < T; ++i) {
      float* __restrict s = w.S + i * Tp;
      const int64_t n = round16(i + 1);  // whole chunks, the columns past i masked: no remainder loops
      float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
      for (int64_t j = 0; j < n; ++j) mx = std::max(mx, j <= i ? s[j] * sc : -INFINITY);
      for (int64_t j = 0; j < n; ++j) s[j] = j <= i ? exp_approx(s[j] * sc - mx) : 0.f;
      const float inv = 1.0f / lane_sum(n, [&](int64_t j) { return s[j]; });
      float* __restrict out = pp + (bh * T + i) * T;
      for (int64_t j = 0; j < std::min(n, T); ++j) out[j] = s[j] *= inv;
      std::fill(s + n, s + Tp, 0.f);
      std::fill(out + std::min(n, T), out + T, 0.f);
    }
    tri_ab<false>(w.S, Tp, w.v, hsp, hsp, w.o, hsp, T);  // y = P v
    w.store(w.o, py + b * T * C + h * hs, C);
  });
  return {y, P};
}

// The gradient of qkv (B*T, 3C) bf16, into dqkv, given dy (B*T, C) bf16 of attention_fwd's y and
// its saved P.
void attention_bwd(const Tensor& qkv, const Tensor& P, const Tensor& dy, int64_t n_head, Tensor& dqkv) {
  const int64_t B = P.size(0) / n_head, T = P.size(1), C = dy.size(1), hs = C / n_head;
  const float sc = float(1.0 / std::sqrt(double(hs)));
  const bf16* pqkv = cbf(qkv);
  const bf16* pdy = cbf(dy);
  const float* pp = P.const_data_ptr<float>();
  bf16* pdq = mbf(dqkv);
  each_head(B, n_head, T, hs, [&](HeadSpace& w, int64_t bh, int64_t b, int64_t h) {
    const int64_t Tp = w.Tp, hsp = w.hsp;
    const bf16* src = pqkv + b * T * 3 * C + h * hs;
    bf16* dst = pdq + b * T * 3 * C + h * hs;
    w.load(src, 3 * C, w.q, false), w.load(src + C, 3 * C, w.k, false), w.load(src + 2 * C, 3 * C, w.v, true);
    w.load(pdy + b * T * C + h * hs, C, w.d, false);
    for (int64_t i = 0; i < T; ++i) std::memcpy(w.S + i * Tp, pp + (bh * T + i) * T, T * sizeof(float));
    abt_lower(w.d, hsp, w.v, Tp, hsp, w.D, Tp, T);  // dP = dy v^T
    for (int64_t i = 0; i < T; ++i) {  // dS = scale P (dP - sum_j P dP), zero past column i
      const float* __restrict p = w.S + i * Tp;
      float* __restrict dp = w.D + i * Tp;
      const int64_t n = round16(i + 1);
      const float dot = lane_sum(n, [&](int64_t j) { return j <= i ? p[j] * dp[j] : 0.f; });
      for (int64_t j = 0; j < n; ++j) dp[j] = j <= i ? sc * p[j] * (dp[j] - dot) : 0.f;
      std::fill(dp + n, dp + Tp, 0.f);
    }
    tri_ab<false>(w.D, Tp, w.k, hsp, hsp, w.o, hsp, T);  // dq = dS k
    w.store(w.o, dst, 3 * C);
    tri_ab<true>(w.D, Tp, w.q, hsp, hsp, w.o, hsp, T);  // dk = dS^T q
    w.store(w.o, dst + C, 3 * C);
    tri_ab<true>(w.S, Tp, w.d, hsp, hsp, w.o, hsp, T);  // dv = P^T dy
    w.store(w.o, dst + 2 * C, 3 * C);
  });
}

// fp32 `src` in bf16 into `dst` (same shape, contiguous): ATen's conversion takes ~3x longer
// where the CPU converts in hardware (store_bf16).
Tensor& copy_bf16(Tensor& dst, const Tensor& src_) {
  const Tensor src = src_.contiguous();
  const float* ps = src.const_data_ptr<float>();
  bf16* pd = mbf(dst);
  at::parallel_for(0, src.numel(), 8192, [&](int64_t begin, int64_t end) { store_bf16(ps + begin, pd + begin, end - begin); });
  return dst;
}
Tensor to_bf16(const Tensor& src) {
  Tensor dst = at::empty(src.sizes(), src.options().dtype(at::kBFloat16));
  return copy_bf16(dst, src);
}
Tensor to_f32(const Tensor& src_) {  // bf16 -> fp32 is exact: a shift
  const Tensor src = src_.contiguous();
  Tensor dst = at::empty(src.sizes(), src.options().dtype(at::kFloat));
  const bf16* ps = cbf(src);
  float* pd = dst.mutable_data_ptr<float>();
  at::parallel_for(0, src.numel(), 8192, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) pd[i] = bf2f(ps[i]);
  });
  return dst;
}

// x w16^T (+ b) into `out` (resized to fit), mostly a buffer reused across layers, so still in cache
Tensor& linear_out(Tensor& out, const Tensor& x, const Tensor& w16, const Tensor& b) {
  return b.defined() ? at::addmm_out(out, to_bf16(b), x, w16.t()) : at::mm_out(out, x, w16.t());
}

// Parameters per block, in this order: ln_1.weight, [ln_1.bias], attn.c_attn.weight,
// [attn.c_attn.bias], attn.c_proj.weight, [attn.c_proj.bias], ln_2.weight, [ln_2.bias],
// mlp.c_fc.weight, [mlp.c_fc.bias], mlp.c_proj.weight, [mlp.c_proj.bias] (bracketed: with bias).
inline bool in_params(int64_t slot, bool bias) { return bias || slot % 2 == 0; }  // odd slots: biases

struct Block {
  Tensor ln1_w, ln1_b, attn_w, attn_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, mlp_w, mlp_b;
  Block(at::TensorList p, int64_t layer, bool bias) {
    const int64_t k = bias ? 12 : 6;
    std::vector<Tensor> v(12);
    for (int64_t i = 0, j = 0; i < 12; ++i) {
      if (in_params(i, bias)) v[i] = p[layer * k + j++];
    }
    ln1_w = v[0], ln1_b = v[1], attn_w = v[2], attn_b = v[3], proj_w = v[4], proj_b = v[5];
    ln2_w = v[6], ln2_b = v[7], fc_w = v[8], fc_b = v[9], mlp_w = v[10], mlp_b = v[11];
  }
};

constexpr int64_t kSaved = 17;  // tensors saved per block for the backward

// x (B, T, C) fp32 -> [output (B, T, C) fp32, then kSaved tensors per block].
// Intermediates that are not saved go to buffers reused from layer to layer: a matmul writing into
// memory still in cache ran ~1.6x faster here than into a fresh (cold) allocation.
std::vector<Tensor> gpt2_blocks_forward(const Tensor& x_in, at::TensorList params, int64_t n_layer, int64_t n_head,
                                        double eps, bool bias, bool tanh_gelu) {
  const int64_t B = x_in.size(0), T = x_in.size(1), C = x_in.size(2), N = B * T;
  const auto bf = x_in.options().dtype(at::kBFloat16);
  Tensor hidden = at::empty({0}, bf), out_c = at::empty({0}, bf);  // out_c: c_proj outputs, then added to x
  std::vector<Tensor> out{Tensor()};
  Tensor x = x_in.reshape({N, C}).contiguous(), pending;  // pending: the MLP output not yet added to x
  for (int64_t l = 0; l < n_layer; ++l) {
    Block p(params, l, bias);
    Tensor W_attn = to_bf16(p.attn_w), W_proj = to_bf16(p.proj_w), W_fc = to_bf16(p.fc_w), W_mlp = to_bf16(p.mlp_w);
    auto [x0, xn1, mean1, rstd1] = ln_fwd(x, pending, p.ln1_w, p.ln1_b, eps);
    Tensor qkv = at::empty({N, 3 * C}, bf);  // saved for the backward: a fresh tensor per layer
    linear_out(qkv, xn1, W_attn, p.attn_b);
    auto [y, P] = attention_fwd(qkv, B, n_head);
    auto [x1, xn2, mean2, rstd2] = ln_fwd(x0, linear_out(out_c, y, W_proj, p.proj_b), p.ln2_w, p.ln2_b, eps);
    auto [g, dg] = gelu_fwd(linear_out(hidden, xn2, W_fc, p.fc_b), tanh_gelu);
    pending = linear_out(out_c, g, W_mlp, p.mlp_b);
    x = x1;
    for (const Tensor& t : {x0, xn1, mean1, rstd1, qkv, P, y, x1, xn2, mean2, rstd2, g, dg,
                            W_attn, W_proj, W_fc, W_mlp})
      out.push_back(t);
  }
  out[0] = at::add(x, pending).view({B, T, C});
  return out;
}

Tensor bias_grad(const Tensor& d) { return at::sum(d, {0}, false, at::kFloat); }

// dy (B, T, C) -> [dx (B, T, C), then the parameters' gradients in the order of `params`].
std::vector<Tensor> gpt2_blocks_backward(const Tensor& dy, at::TensorList saved, at::TensorList params, int64_t n_layer,
                                         int64_t n_head, bool bias) {
  const int64_t B = dy.size(0), T = dy.size(1), C = dy.size(2), N = B * T;
  const int64_t k = bias ? 12 : 6;
  const auto bf = dy.options().dtype(at::kBFloat16);
  std::vector<Tensor> grads(1 + n_layer * k);
  Tensor dx = dy.reshape({N, C}).to(at::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
  // buffers reused by every layer, as in the forward
  Tensor d16 = at::empty({N, C}, bf), dnorm = at::empty({N, C}, bf), hidden = at::empty({0}, bf);
  Tensor dqkv = at::empty({N, 3 * C}, bf);
  Tensor xhat = at::empty({N, C}, dy.options().dtype(at::kFloat));
  for (int64_t l = n_layer - 1; l >= 0; --l) {
    const Tensor* s = saved.data() + l * kSaved;
    const Tensor &x0 = s[0], &xn1 = s[1], &mean1 = s[2], &rstd1 = s[3], &qkv = s[4], &P = s[5], &y = s[6];
    const Tensor &x1 = s[7], &xn2 = s[8], &mean2 = s[9], &rstd2 = s[10], &g = s[11], &dg = s[12];
    const Tensor &W_attn = s[13], &W_proj = s[14], &W_fc = s[15], &W_mlp = s[16];
    Block p(params, l, bias);
    std::vector<Tensor> gl(12);  // same slots as Block
    // MLP: x2 = x1 + c_proj(gelu(c_fc(ln_2(x1))))
    const Tensor& dm = copy_bf16(d16, dx);
    gl[10] = to_f32(at::mm(dm.t(), g));
    if (bias) gl[11] = bias_grad(dm);
    Tensor& dh = at::mm_out(hidden, dm, W_mlp);
    mul_bf16_(dh, dg);  // through GELU: its derivative, saved by the forward
    gl[8] = to_f32(at::mm(dh.t(), xn2));
    if (bias) gl[9] = bias_grad(dh);
    std::tie(gl[6], gl[7]) = ln_bwd(at::mm_out(dnorm, dh, W_fc), x1, mean2, rstd2, p.ln2_w, bias, dx, xhat);
    // attention: x1 = x0 + c_proj(attend(c_attn(ln_1(x0))))
    const Tensor& da = copy_bf16(d16, dx);
    gl[4] = to_f32(at::mm(da.t(), y));
    if (bias) gl[5] = bias_grad(da);
    attention_bwd(qkv, P, at::mm_out(dnorm, da, W_proj), n_head, dqkv);
    gl[2] = to_f32(at::mm(dqkv.t(), xn1));
    if (bias) gl[3] = bias_grad(dqkv);
    std::tie(gl[0], gl[1]) = ln_bwd(at::mm_out(dnorm, dqkv, W_attn), x0, mean1, rstd1, p.ln1_w, bias, dx, xhat);
    for (int64_t i = 0, j = 0; i < 12; ++i) {
      if (in_params(i, bias)) grads[1 + l * k + j++] = gl[i];
    }
  }
  grads[0] = dx.view({B, T, C});
  return grads;
}

}  // namespace

TORCH_LIBRARY(genforge_cpu, m) {
  m.def("gpt2_blocks_forward(Tensor x, Tensor[] params, int n_layer, int n_head, float eps, bool bias, "
        "bool tanh_gelu) -> Tensor[]", &gpt2_blocks_forward);
  m.def("gpt2_blocks_backward(Tensor dy, Tensor[] saved, Tensor[] params, int n_layer, int n_head, bool bias) "
        "-> Tensor[]", &gpt2_blocks_backward);
}

TORCH_LIBRARY_FRAGMENT(genforge_cpu, m) {  // the kernels alone, for their tests
  m.def("gelu_fwd(Tensor h, bool tanh) -> (Tensor, Tensor)", &gelu_fwd);
  m.def("attention_fwd(Tensor qkv, int batch, int n_head) -> (Tensor, Tensor)", &attention_fwd);
  m.def("attention_bwd(Tensor qkv, Tensor p, Tensor dy, int n_head) -> Tensor",
        [](const Tensor& qkv, const Tensor& P, const Tensor& dy, int64_t n_head) {
          Tensor dqkv = at::empty_like(qkv);
          attention_bwd(qkv, P, dy, n_head, dqkv);
          return dqkv;
        });
}
