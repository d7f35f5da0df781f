// Per-element maths of deformable convolution and multi-scale deformable attention.
//
// Plain C++ (no torch headers) shared by the CPU kernels (cpu_ops.cpp) and the CUDA kernels
// (cuda_kernels.cu): the same functions define both, so the two cannot drift. Conventions follow
// the pure-PyTorch reference (bupose/core/ops/reference.py):
//   - bilinear sampling at pixel-index coordinates; a point outside (-1, H) x (-1, W) gives 0 and
//     so do corners outside the map (torchvision / Deformable-DETR rule);
//   - deform_conv2d offsets: per offset group and kernel tap k the pair (dy_k, dx_k) at channels
//     (2k, 2k+1); mask channel = offset group * K + k;
//   - ms_deform_attn locations are normalised (x, y): pixel = loc * size - 0.5.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define BUPOSE_HD __host__ __device__ __forceinline__
#else
#define BUPOSE_HD inline
#endif

namespace bupose_ops {

BUPOSE_HD float floor_(float v) { return floorf(v); }
BUPOSE_HD double floor_(double v) { return floor(v); }

// Corner indices and weights of one bilinear sample. `inside` is false for points outside
// (-1, H) x (-1, W) (and NaN); then every weight is 0. A corner outside the map has valid = false.
template <typename T>
struct Bilinear {
  bool inside;
  int64_t idx[4];
  bool valid[4];
  T w[4];
  T ly, lx, hy, hx;

  BUPOSE_HD Bilinear(int64_t H, int64_t W, T y, T x) {
    inside = (y > T(-1)) && (y < T(H)) && (x > T(-1)) && (x < T(W));
    if (!inside) {
      y = T(0);
      x = T(0);
    }
    const T y0f = floor_(y);
    const T x0f = floor_(x);
    const int64_t y0 = static_cast<int64_t>(y0f);
    const int64_t x0 = static_cast<int64_t>(x0f);
    ly = y - y0f;
    lx = x - x0f;
    hy = T(1) - ly;
    hx = T(1) - lx;
    const int64_t ys[4] = {y0, y0, y0 + 1, y0 + 1};
    const int64_t xs[4] = {x0, x0 + 1, x0, x0 + 1};
    const T ws[4] = {hy * hx, hy * lx, ly * hx, ly * lx};
    for (int i = 0; i < 4; ++i) {
      valid[i] = inside && ys[i] >= 0 && ys[i] < H && xs[i] >= 0 && xs[i] < W;
      idx[i] = valid[i] ? ys[i] * W + xs[i] : 0;
      w[i] = valid[i] ? ws[i] : T(0);
    }
  }

  // Sampled value; pixel p of the plane lives at data[p * stride].
  BUPOSE_HD T sample(const T* data, int64_t stride) const {
    T v = T(0);
    for (int i = 0; i < 4; ++i) {
      if (valid[i]) v += w[i] * data[idx[i] * stride];
    }
    return v;
  }

  // d(sample)/dy and d(sample)/dx (0 outside, like the forward).
  BUPOSE_HD void coord_grad(const T* data, int64_t stride, T* gy, T* gx) const {
    T c[4];
    for (int i = 0; i < 4; ++i) c[i] = valid[i] ? data[idx[i] * stride] : T(0);
    if (!inside) {
      *gy = T(0);
      *gx = T(0);
      return;
    }
    *gy = -hx * c[0] - lx * c[1] + hx * c[2] + lx * c[3];
    *gx = -hy * c[0] + hy * c[1] - ly * c[2] + ly * c[3];
  }

  // Scatter g * weight into the valid corners with `add(pointer, value)`.
  template <typename Add>
  BUPOSE_HD void scatter(T* data, int64_t stride, T g, const Add& add) const {
    for (int i = 0; i < 4; ++i) {
      if (valid[i]) add(data + idx[i] * stride, g * w[i]);
    }
  }
};

// Geometry of one deform_conv2d call.
struct DcnShape {
  int64_t B, C, H, W;       // input
  int64_t KH, KW;           // kernel
  int64_t SH, SW, PH, PW, DH, DW;
  int64_t HO, WO;           // output
  int64_t OG;               // offset groups
  BUPOSE_HD int64_t K() const { return KH * KW; }
  BUPOSE_HD int64_t L() const { return HO * WO; }
  BUPOSE_HD int64_t channels_per_og() const { return C / OG; }
};

// Sampling position of column element (b, og, k, l): writes y, x.
template <typename T>
BUPOSE_HD void dcn_position(const DcnShape& s, const T* offset, int64_t b, int64_t og, int64_t k, int64_t l,
                            T* y, T* x) {
  const int64_t K = s.K(), L = s.L();
  const int64_t i = k / s.KW, j = k % s.KW;
  const int64_t ho = l / s.WO, wo = l % s.WO;
  const T* off = offset + ((b * s.OG + og) * 2 * K + 2 * k) * L + l;
  *y = T(ho * s.SH - s.PH + i * s.DH) + off[0];
  *x = T(wo * s.SW - s.PW + j * s.DW) + off[L];
}

// columns[b, c, k, l] (mask may be null).
template <typename T>
BUPOSE_HD T dcn_im2col_element(const DcnShape& s, const T* input, const T* offset, const T* mask, int64_t b,
                               int64_t c, int64_t k, int64_t l) {
  const int64_t og = c / s.channels_per_og();
  T y, x;
  dcn_position(s, offset, b, og, k, l, &y, &x);
  const Bilinear<T> bl(s.H, s.W, y, x);
  T v = bl.sample(input + (b * s.C + c) * s.H * s.W, 1);
  if (mask != nullptr) v *= mask[((b * s.OG + og) * s.K() + k) * s.L() + l];
  return v;
}

// Adds grad_columns[b, c, k, l] into grad_input's plane (b, c).
template <typename T, typename Add>
BUPOSE_HD void dcn_col2im_element(const DcnShape& s, const T* grad_cols, const T* offset, const T* mask,
                                  T* grad_input, int64_t b, int64_t c, int64_t k, int64_t l, const Add& add) {
  const int64_t og = c / s.channels_per_og();
  T g = grad_cols[((b * s.C + c) * s.K() + k) * s.L() + l];
  if (mask != nullptr) g *= mask[((b * s.OG + og) * s.K() + k) * s.L() + l];
  if (g == T(0)) return;
  T y, x;
  dcn_position(s, offset, b, og, k, l, &y, &x);
  const Bilinear<T> bl(s.H, s.W, y, x);
  bl.scatter(grad_input + (b * s.C + c) * s.H * s.W, 1, g, add);
}

// One sampling position (b, og, k, l) for channels [c0, c1) of offset group og: writes
// columns[b, c, k, l] (the bilinear weights are computed once for all those channels).
template <typename T>
BUPOSE_HD void dcn_im2col_point(const DcnShape& s, const T* input, const T* offset, const T* mask, T* columns,
                                int64_t b, int64_t og, int64_t k, int64_t l, int64_t c0, int64_t c1) {
  T y, x;
  dcn_position(s, offset, b, og, k, l, &y, &x);
  const Bilinear<T> bl(s.H, s.W, y, x);
  const T m = mask != nullptr ? mask[((b * s.OG + og) * s.K() + k) * s.L() + l] : T(1);
  const int64_t hw = s.H * s.W, kl = s.K() * s.L();
  const T* plane = input + (b * s.C + c0) * hw;
  T* out = columns + ((b * s.C + c0) * s.K() + k) * s.L() + l;
  for (int64_t c = c0; c < c1; ++c, plane += hw, out += kl) *out = bl.inside ? bl.sample(plane, 1) * m : T(0);
}

// Scatter of grad_columns[b, c, k, l] into grad_input for channels [c0, c1) of offset group og.
template <typename T, typename Add>
BUPOSE_HD void dcn_col2im_point(const DcnShape& s, const T* grad_cols, const T* offset, const T* mask,
                                T* grad_input, int64_t b, int64_t og, int64_t k, int64_t l, int64_t c0, int64_t c1,
                                const Add& add) {
  T y, x;
  dcn_position(s, offset, b, og, k, l, &y, &x);
  const Bilinear<T> bl(s.H, s.W, y, x);
  if (!bl.inside) return;
  const T m = mask != nullptr ? mask[((b * s.OG + og) * s.K() + k) * s.L() + l] : T(1);
  const int64_t hw = s.H * s.W, kl = s.K() * s.L();
  T* plane = grad_input + (b * s.C + c0) * hw;
  const T* g = grad_cols + ((b * s.C + c0) * s.K() + k) * s.L() + l;
  for (int64_t c = c0; c < c1; ++c, plane += hw, g += kl) {
    if (*g != T(0)) bl.scatter(plane, 1, *g * m, add);
  }
}

// Gradients of offset (dy, dx) and mask for element (b, og, k, l), summed over the group's channels.
template <typename T>
BUPOSE_HD void dcn_coord_element(const DcnShape& s, const T* grad_cols, const T* input, const T* offset,
                                 const T* mask, T* grad_offset, T* grad_mask, int64_t b, int64_t og, int64_t k,
                                 int64_t l) {
  const int64_t K = s.K(), L = s.L(), cpg = s.channels_per_og();
  T y, x;
  dcn_position(s, offset, b, og, k, l, &y, &x);
  const Bilinear<T> bl(s.H, s.W, y, x);
  const T m = mask != nullptr ? mask[((b * s.OG + og) * K + k) * L + l] : T(1);
  T gy = T(0), gx = T(0), gm = T(0);
  if (bl.inside) {
    for (int64_t ci = 0; ci < cpg; ++ci) {
      const int64_t c = og * cpg + ci;
      const T g = grad_cols[((b * s.C + c) * K + k) * L + l];
      if (g == T(0)) continue;
      const T* plane = input + (b * s.C + c) * s.H * s.W;
      T v[4];
      for (int i = 0; i < 4; ++i) v[i] = bl.valid[i] ? plane[bl.idx[i]] : T(0);
      gy += g * (-bl.hx * v[0] - bl.lx * v[1] + bl.hx * v[2] + bl.lx * v[3]);
      gx += g * (-bl.hy * v[0] + bl.hy * v[1] - bl.ly * v[2] + bl.ly * v[3]);
      gm += g * (bl.w[0] * v[0] + bl.w[1] * v[1] + bl.w[2] * v[2] + bl.w[3] * v[3]);
    }
  }
  T* go = grad_offset + ((b * s.OG + og) * 2 * K + 2 * k) * L + l;
  go[0] = gy * m;
  go[L] = gx * m;
  if (grad_mask != nullptr) grad_mask[((b * s.OG + og) * K + k) * L + l] = gm;
}

// Geometry of one ms_deform_attn call. shapes: (L, 2) (H, W); starts: (L,).
struct MsdaShape {
  int64_t N, S, M, D, Q, L, P;
};

// out[n, q, m*D + d].
template <typename T>
BUPOSE_HD T msda_forward_element(const MsdaShape& s, const T* value, const int64_t* shapes, const int64_t* starts,
                                 const T* loc, const T* attn, int64_t n, int64_t q, int64_t m, int64_t d) {
  T acc = T(0);
  const int64_t base = ((n * s.Q + q) * s.M + m) * s.L * s.P;
  for (int64_t lv = 0; lv < s.L; ++lv) {
    const int64_t H = shapes[2 * lv], W = shapes[2 * lv + 1];
    const T* v = value + ((n * s.S + starts[lv]) * s.M + m) * s.D + d;
    for (int64_t p = 0; p < s.P; ++p) {
      const int64_t i = base + lv * s.P + p;
      const T x = loc[2 * i] * T(W) - T(0.5);
      const T y = loc[2 * i + 1] * T(H) - T(0.5);
      const Bilinear<T> bl(H, W, y, x);
      acc += attn[i] * bl.sample(v, s.M * s.D);
    }
  }
  return acc;
}

// out[n, q, m*D : (m+1)*D] for one (n, q, m): the bilinear weights of each point are computed
// once and applied to the D contiguous channels.
template <typename T>
BUPOSE_HD void msda_forward_row(const MsdaShape& s, const T* value, const int64_t* shapes, const int64_t* starts,
                                const T* loc, const T* attn, int64_t n, int64_t q, int64_t m, T* out) {
  for (int64_t d = 0; d < s.D; ++d) out[d] = T(0);
  const int64_t base = ((n * s.Q + q) * s.M + m) * s.L * s.P;
  for (int64_t lv = 0; lv < s.L; ++lv) {
    const int64_t H = shapes[2 * lv], W = shapes[2 * lv + 1];
    const T* v = value + ((n * s.S + starts[lv]) * s.M + m) * s.D;
    for (int64_t p = 0; p < s.P; ++p) {
      const int64_t i = base + lv * s.P + p;
      const Bilinear<T> bl(H, W, loc[2 * i + 1] * T(H) - T(0.5), loc[2 * i] * T(W) - T(0.5));
      if (!bl.inside) continue;
      for (int c = 0; c < 4; ++c) {
        if (!bl.valid[c]) continue;
        const T w = attn[i] * bl.w[c];
        const T* src = v + bl.idx[c] * s.M * s.D;
        for (int64_t d = 0; d < s.D; ++d) out[d] += w * src[d];
      }
    }
  }
}

// Gradients for sampling point (n, q, m, lv, p): writes grad_loc (x, y) and grad_attn, and adds into
// grad_value with `add`.
template <typename T, typename Add>
BUPOSE_HD void msda_backward_element(const MsdaShape& s, const T* value, const int64_t* shapes,
                                     const int64_t* starts, const T* loc, const T* attn, const T* grad_out,
                                     T* grad_value, T* grad_loc, T* grad_attn, int64_t n, int64_t q, int64_t m,
                                     int64_t lv, int64_t p, const Add& add) {
  const int64_t H = shapes[2 * lv], W = shapes[2 * lv + 1];
  const int64_t i = ((n * s.Q + q) * s.M + m) * s.L * s.P + lv * s.P + p;
  const T x = loc[2 * i] * T(W) - T(0.5);
  const T y = loc[2 * i + 1] * T(H) - T(0.5);
  const Bilinear<T> bl(H, W, y, x);
  const T a = attn[i];
  const int64_t off = ((n * s.S + starts[lv]) * s.M + m) * s.D;
  const T* go = grad_out + (n * s.Q + q) * s.M * s.D + m * s.D;
  // dot[c] = sum_d grad_out[d] * value[corner c, d]
  T dot[4] = {T(0), T(0), T(0), T(0)};
  if (bl.inside) {
    for (int c = 0; c < 4; ++c) {
      if (!bl.valid[c]) continue;
      const int64_t row = off + bl.idx[c] * s.M * s.D;
      T acc = T(0);
      for (int64_t d = 0; d < s.D; ++d) {
        acc += go[d] * value[row + d];
        if (bl.w[c] != T(0)) add(grad_value + row + d, go[d] * a * bl.w[c]);
      }
      dot[c] = acc;
    }
  }
  const T ga = bl.w[0] * dot[0] + bl.w[1] * dot[1] + bl.w[2] * dot[2] + bl.w[3] * dot[3];
  const T gy = bl.inside ? -bl.hx * dot[0] - bl.lx * dot[1] + bl.hx * dot[2] + bl.lx * dot[3] : T(0);
  const T gx = bl.inside ? -bl.hy * dot[0] + bl.hy * dot[1] - bl.ly * dot[2] + bl.ly * dot[3] : T(0);
  grad_attn[i] = ga;
  grad_loc[2 * i] = gx * a * T(W);
  grad_loc[2 * i + 1] = gy * a * T(H);
}

}  // namespace bupose_ops
