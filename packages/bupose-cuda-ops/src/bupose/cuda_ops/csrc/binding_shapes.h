// Shape descriptors from torch tensors, shared by the CPU and CUDA bindings (torch-aware; the .cu
// kernels stay torch-free and only see the plain structs from ops_math.h).
#pragma once

#include <torch/extension.h>

#include "ops_math.h"

namespace bupose_ops {

// `who` names the implementation in error messages ("bupose cpp op", "bupose cuda op").
inline DcnShape dcn_shape(const at::Tensor& input, const at::Tensor& offset, int64_t kh, int64_t kw, int64_t sh,
                          int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, const char* who) {
  DcnShape s{};
  s.B = input.size(0);
  s.C = input.size(1);
  s.H = input.size(2);
  s.W = input.size(3);
  s.KH = kh;
  s.KW = kw;
  s.SH = sh;
  s.SW = sw;
  s.PH = ph;
  s.PW = pw;
  s.DH = dh;
  s.DW = dw;
  s.HO = offset.size(2);
  s.WO = offset.size(3);
  s.OG = offset.size(1) / (2 * kh * kw);
  TORCH_CHECK(s.OG > 0 && s.C % s.OG == 0, who, ": bad offset groups");
  return s;
}

inline MsdaShape msda_shape(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& loc) {
  MsdaShape s{};
  s.N = value.size(0);
  s.S = value.size(1);
  s.M = value.size(2);
  s.D = value.size(3);
  s.Q = loc.size(1);
  s.L = shapes.size(0);
  s.P = loc.size(4);
  return s;
}

}  // namespace bupose_ops
