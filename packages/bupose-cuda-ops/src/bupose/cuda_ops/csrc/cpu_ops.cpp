// CPU kernels (at::parallel_for) for deform_conv2d's column transforms and ms_deform_attn.
// The matrix products of deform_conv2d are done by torch in Python (bupose/cuda_ops/functions.py).
#include <torch/extension.h>

#include <algorithm>
#include <vector>

#include <ATen/Parallel.h>

#include "ops_math.h"
#include "binding_shapes.h"

namespace {

using bupose_ops::DcnShape;
using bupose_ops::MsdaShape;
using bupose_ops::dcn_shape;
using bupose_ops::msda_shape;

struct PlainAdd {
  template <typename T>
  void operator()(T* p, T v) const { *p += v; }
};

void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "bupose cpp op: ", name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), "bupose cpp op: ", name, " must be contiguous");
}


// input (B, C, H, W), offset (B, 2*OG*K, HO, WO), mask (B, OG*K, HO, WO) or empty -> (B, C, K, HO*WO)
//
// One task per (b, og, k) row, processed in tiles of kTile sampling positions: the bilinear corners
// and weights of a tile are computed once (kept in L1), then each channel of the offset group is
// sampled plane by plane, reading one plane and writing one contiguous run of columns at a time.
// (Looping channels innermost instead reads C planes H*W apart and writes C rows K*L apart for
// every position: with power-of-two map sizes those all fall in the same cache sets.) Each value
// is the same expression as dcn_im2col_point's, in the same order, so results do not change.
constexpr int64_t kTile = 256;

at::Tensor dcn_im2col(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, int64_t kh,
                      int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  check_cpu(input, "input");
  check_cpu(offset, "offset");
  const bool has_mask = mask.numel() > 0;
  if (has_mask) check_cpu(mask, "mask");
  const DcnShape s = dcn_shape(input, offset, kh, kw, sh, sw, ph, pw, dh, dw, "bupose cpp op");
  auto cols = at::empty({s.B, s.C, s.K(), s.L()}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "bupose_dcn_im2col", [&] {
    const scalar_t* in = input.data_ptr<scalar_t>();
    const scalar_t* off = offset.data_ptr<scalar_t>();
    const scalar_t* msk = has_mask ? mask.data_ptr<scalar_t>() : nullptr;
    scalar_t* out = cols.data_ptr<scalar_t>();
    const int64_t rows = s.B * s.OG * s.K(), L = s.L(), K = s.K(), cpg = s.channels_per_og(), hw = s.H * s.W;
    at::parallel_for(0, rows, 1, [&](int64_t a, int64_t e) {
      int64_t idx[kTile][4];
      scalar_t wts[kTile][4];
      bool valid[kTile][4];
      bool inside[kTile];
      scalar_t mult[kTile];
      for (int64_t r = a; r < e; ++r) {
        const int64_t k = r % K, og = (r / K) % s.OG, b = r / (K * s.OG);
        for (int64_t l0 = 0; l0 < L; l0 += kTile) {
          const int64_t n = std::min<int64_t>(kTile, L - l0);
          for (int64_t t = 0; t < n; ++t) {
            scalar_t y, x;
            bupose_ops::dcn_position(s, off, b, og, k, l0 + t, &y, &x);
            const bupose_ops::Bilinear<scalar_t> bl(s.H, s.W, y, x);
            inside[t] = bl.inside;
            mult[t] = msk != nullptr ? msk[((b * s.OG + og) * K + k) * L + l0 + t] : scalar_t(1);
            for (int i = 0; i < 4; ++i) {
              idx[t][i] = bl.idx[i];
              wts[t][i] = bl.w[i];
              valid[t][i] = bl.valid[i];
            }
          }
          for (int64_t c = og * cpg; c < (og + 1) * cpg; ++c) {
            const scalar_t* plane = in + (b * s.C + c) * hw;
            scalar_t* dst = out + ((b * s.C + c) * K + k) * L + l0;
            for (int64_t t = 0; t < n; ++t) {
              scalar_t v = scalar_t(0);
              for (int i = 0; i < 4; ++i) {
                if (valid[t][i]) v += wts[t][i] * plane[idx[t][i]];
              }
              dst[t] = inside[t] ? v * mult[t] : scalar_t(0);
            }
          }
        }
      }
    });
  });
  return cols;
}

// Channels-last columns for inference: input (B, C, H, W) whose channels are adjacent in memory
// (stride(1) == 1, any other strides, e.g. a channel slice of a channels-last map), offset
// (B, 2*OG*K, HO, WO) and mask as in dcn_im2col -> (B, L, K, C). Every value is the same expression
// as dcn_im2col's (the same bilinear weights, corners summed in the same order; a corner outside
// the map adds w * 0 with w = 0 instead of being skipped), but the channels of one sampling point
// are one contiguous run, which the compiler vectorises; the caller multiplies the (O, K*C) weights
// by these columns read transposed (functions.py, _deform_conv2d_nhwc) for a (B, O, L) output.
at::Tensor dcn_im2col_nhwc(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, int64_t kh,
                           int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  TORCH_CHECK(input.device().is_cpu() && input.dim() == 4, "bupose cpp op: input must be a 4-d CPU tensor");
  TORCH_CHECK(input.stride(1) == 1, "bupose cpp op: dcn_im2col_nhwc needs adjacent channels (stride(1) == 1)");
  check_cpu(offset, "offset");
  const bool has_mask = mask.numel() > 0;
  if (has_mask) check_cpu(mask, "mask");
  const DcnShape s = dcn_shape(input, offset, kh, kw, sh, sw, ph, pw, dh, dw, "bupose cpp op");
  auto cols = at::empty({s.B, s.L(), s.K(), s.C}, input.options());
  const int64_t sb = input.stride(0), sy = input.stride(2), sx = input.stride(3);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "bupose_dcn_im2col_nhwc", [&] {
    const scalar_t* in = input.data_ptr<scalar_t>();
    const scalar_t* off = offset.data_ptr<scalar_t>();
    const scalar_t* msk = has_mask ? mask.data_ptr<scalar_t>() : nullptr;
    scalar_t* out = cols.data_ptr<scalar_t>();
    const int64_t L = s.L(), K = s.K(), C = s.C, cpg = s.channels_per_og();
    std::vector<scalar_t> zeros(cpg, scalar_t(0));
    at::parallel_for(0, s.B * L, 64, [&](int64_t a, int64_t e) {
      for (int64_t r = a; r < e; ++r) {
        const int64_t l = r % L, b = r / L;
        const int64_t ho = l / s.WO, wo = l % s.WO;
        const scalar_t* base = in + b * sb;
        for (int64_t og = 0; og < s.OG; ++og) {
          const scalar_t* off_l = off + (b * s.OG + og) * 2 * K * L + l;
          for (int64_t k = 0; k < K; ++k) {
            scalar_t* dst = out + (r * K + k) * C + og * cpg;
            // dcn_position's expression, with the divisions hoisted out of the loops
            const int64_t i = k / s.KW, j = k - i * s.KW;
            const scalar_t y = scalar_t(ho * s.SH - s.PH + i * s.DH) + off_l[2 * k * L];
            const scalar_t x = scalar_t(wo * s.SW - s.PW + j * s.DW) + off_l[(2 * k + 1) * L];
            const bupose_ops::Bilinear<scalar_t> bl(s.H, s.W, y, x);
            if (!bl.inside) {
              std::fill(dst, dst + cpg, scalar_t(0));
              continue;
            }
            const scalar_t mult = msk != nullptr ? msk[((b * s.OG + og) * K + k) * L + l] : scalar_t(1);
            // the corners (y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1), as in Bilinear
            const int64_t y0 = static_cast<int64_t>(bupose_ops::floor_(y));
            const int64_t x0 = static_cast<int64_t>(bupose_ops::floor_(x));
            const int64_t corner = y0 * sy + x0 * sx + og * cpg;  // may lie outside: used only when valid
            const int64_t step[4] = {0, sx, sy, sy + sx};
            const scalar_t* p[4];
            scalar_t w[4];
            for (int q = 0; q < 4; ++q) {
              p[q] = bl.valid[q] ? base + (corner + step[q]) : zeros.data();
              w[q] = bl.valid[q] ? bl.w[q] : scalar_t(0);
            }
            const scalar_t *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
            const scalar_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
            for (int64_t c = 0; c < cpg; ++c) {
              scalar_t v = scalar_t(0);
              v += w0 * p0[c];
              v += w1 * p1[c];
              v += w2 * p2[c];
              v += w3 * p3[c];
              dst[c] = v * mult;
            }
          }
        }
      }
    });
  });
  return cols;
}

// grad_cols (B, C, K, L) -> grad_input (B, C, H, W); one task per (b, c) plane, so no races.
at::Tensor dcn_col2im(const at::Tensor& grad_cols, const at::Tensor& offset, const at::Tensor& mask,
                      const at::Tensor& input, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                      int64_t pw, int64_t dh, int64_t dw) {
  check_cpu(grad_cols, "grad_columns");
  check_cpu(offset, "offset");
  const bool has_mask = mask.numel() > 0;
  if (has_mask) check_cpu(mask, "mask");
  const DcnShape s = dcn_shape(input, offset, kh, kw, sh, sw, ph, pw, dh, dw, "bupose cpp op");
  auto grad_input = at::zeros({s.B, s.C, s.H, s.W}, grad_cols.options());
  AT_DISPATCH_FLOATING_TYPES(grad_cols.scalar_type(), "bupose_dcn_col2im", [&] {
    const scalar_t* gc = grad_cols.data_ptr<scalar_t>();
    const scalar_t* off = offset.data_ptr<scalar_t>();
    const scalar_t* msk = has_mask ? mask.data_ptr<scalar_t>() : nullptr;
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    const PlainAdd add;
    // Tasks own (b, og, channel chunk): disjoint planes of grad_input, so no races; the chunking
    // keeps every thread busy when B * OG is small.
    const int64_t cpg = s.channels_per_og(), groups = s.B * s.OG;
    const int64_t want = 4 * static_cast<int64_t>(at::get_num_threads());
    const int64_t chunks = std::min<int64_t>(cpg, std::max<int64_t>(1, (want + groups - 1) / groups));
    const int64_t per = (cpg + chunks - 1) / chunks;
    at::parallel_for(0, groups * chunks, 1, [&](int64_t a, int64_t e) {
      for (int64_t r = a; r < e; ++r) {
        const int64_t chunk = r % chunks, og = (r / chunks) % s.OG, b = r / (chunks * s.OG);
        const int64_t c0 = og * cpg + chunk * per, c1 = std::min(og * cpg + cpg, c0 + per);
        if (c0 >= c1) continue;
        for (int64_t k = 0; k < s.K(); ++k) {
          for (int64_t l = 0; l < s.L(); ++l) {
            bupose_ops::dcn_col2im_point(s, gc, off, msk, gi, b, og, k, l, c0, c1, add);
          }
        }
      }
    });
  });
  return grad_input;
}

// -> (grad_offset, grad_mask); grad_mask is empty when there is no mask.
std::vector<at::Tensor> dcn_col2im_coord(const at::Tensor& grad_cols, const at::Tensor& input,
                                         const at::Tensor& offset, const at::Tensor& mask, int64_t kh,
                                         int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                                         int64_t dw) {
  check_cpu(grad_cols, "grad_columns");
  check_cpu(input, "input");
  check_cpu(offset, "offset");
  const bool has_mask = mask.numel() > 0;
  if (has_mask) check_cpu(mask, "mask");
  const DcnShape s = dcn_shape(input, offset, kh, kw, sh, sw, ph, pw, dh, dw, "bupose cpp op");
  auto grad_offset = at::empty_like(offset);
  auto grad_mask = has_mask ? at::empty_like(mask) : at::empty({0}, offset.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "bupose_dcn_coord", [&] {
    const scalar_t* gc = grad_cols.data_ptr<scalar_t>();
    const scalar_t* in = input.data_ptr<scalar_t>();
    const scalar_t* off = offset.data_ptr<scalar_t>();
    const scalar_t* msk = has_mask ? mask.data_ptr<scalar_t>() : nullptr;
    scalar_t* go = grad_offset.data_ptr<scalar_t>();
    scalar_t* gm = has_mask ? grad_mask.data_ptr<scalar_t>() : nullptr;
    const int64_t rows = s.B * s.OG * s.K(), L = s.L();
    at::parallel_for(0, rows, std::max<int64_t>(1, 1024 / std::max<int64_t>(L, 1)), [&](int64_t a, int64_t e) {
      for (int64_t r = a; r < e; ++r) {
        const int64_t k = r % s.K(), og = (r / s.K()) % s.OG, b = r / (s.K() * s.OG);
        for (int64_t l = 0; l < L; ++l) {
          bupose_ops::dcn_coord_element(s, gc, in, off, msk, go, gm, b, og, k, l);
        }
      }
    });
  });
  return {grad_offset, grad_mask};
}


at::Tensor msda_forward(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& starts,
                        const at::Tensor& loc, const at::Tensor& attn) {
  for (auto* t : {&value, &shapes, &starts, &loc, &attn}) check_cpu(*t, "ms_deform_attn argument");
  const MsdaShape s = msda_shape(value, shapes, loc);
  auto out = at::empty({s.N, s.Q, s.M * s.D}, value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "bupose_msda_forward", [&] {
    const scalar_t* v = value.data_ptr<scalar_t>();
    const int64_t* sh = shapes.data_ptr<int64_t>();
    const int64_t* st = starts.data_ptr<int64_t>();
    const scalar_t* lo = loc.data_ptr<scalar_t>();
    const scalar_t* aw = attn.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, s.N * s.Q * s.M, 16, [&](int64_t a, int64_t e) {
      for (int64_t r = a; r < e; ++r) {
        const int64_t m = r % s.M, q = (r / s.M) % s.Q, n = r / (s.M * s.Q);
        bupose_ops::msda_forward_row(s, v, sh, st, lo, aw, n, q, m, o + r * s.D);
      }
    });
  });
  return out;
}

// -> (grad_value, grad_loc, grad_attn); one task per (n, m) pair owns grad_value[n, :, m, :].
std::vector<at::Tensor> msda_backward(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& starts,
                                      const at::Tensor& loc, const at::Tensor& attn, const at::Tensor& grad_out) {
  for (auto* t : {&value, &shapes, &starts, &loc, &attn, &grad_out}) check_cpu(*t, "ms_deform_attn argument");
  const MsdaShape s = msda_shape(value, shapes, loc);
  auto grad_value = at::zeros_like(value);
  auto grad_loc = at::empty_like(loc);
  auto grad_attn = at::empty_like(attn);
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "bupose_msda_backward", [&] {
    const scalar_t* v = value.data_ptr<scalar_t>();
    const int64_t* sh = shapes.data_ptr<int64_t>();
    const int64_t* st = starts.data_ptr<int64_t>();
    const scalar_t* lo = loc.data_ptr<scalar_t>();
    const scalar_t* aw = attn.data_ptr<scalar_t>();
    const scalar_t* go = grad_out.data_ptr<scalar_t>();
    scalar_t* gv = grad_value.data_ptr<scalar_t>();
    scalar_t* gl = grad_loc.data_ptr<scalar_t>();
    scalar_t* ga = grad_attn.data_ptr<scalar_t>();
    const PlainAdd add;
    at::parallel_for(0, s.N * s.M, 1, [&](int64_t a, int64_t e) {
      for (int64_t r = a; r < e; ++r) {
        const int64_t m = r % s.M, n = r / s.M;
        for (int64_t q = 0; q < s.Q; ++q) {
          for (int64_t lv = 0; lv < s.L; ++lv) {
            for (int64_t p = 0; p < s.P; ++p) {
              bupose_ops::msda_backward_element(s, v, sh, st, lo, aw, go, gv, gl, ga, n, q, m, lv, p, add);
            }
          }
        }
      }
    });
  });
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "bupose CPU kernels: deformable convolution columns and multi-scale deformable attention";
  m.def("dcn_im2col", &dcn_im2col, "deformable im2col -> (B, C, K, L)");
  m.def("dcn_im2col_nhwc", &dcn_im2col_nhwc, "deformable im2col of adjacent-channel input -> (B, L, K, C)");
  m.def("dcn_col2im", &dcn_col2im, "gradient of the input from column gradients");
  m.def("dcn_col2im_coord", &dcn_col2im_coord, "gradients of offset and mask from column gradients");
  m.def("msda_forward", &msda_forward, "multi-scale deformable attention forward");
  m.def("msda_backward", &msda_backward, "multi-scale deformable attention backward");
}
