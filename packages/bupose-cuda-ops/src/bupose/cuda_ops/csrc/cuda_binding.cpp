// Thin torch binding of the CUDA kernels (cuda_kernels.cu): shape checks, allocation, stream.
#include <torch/extension.h>

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda_kernels.h"
#include "binding_shapes.h"

namespace {

using bupose_ops::DcnShape;
using bupose_ops::MsdaShape;
using bupose_ops::dcn_shape;
using bupose_ops::msda_shape;

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), "bupose cuda op: ", name, " must be a CUDA tensor");
  TORCH_CHECK(t.is_contiguous(), "bupose cuda op: ", name, " must be contiguous");
}

void check_launch(int code, const char* what) {
  TORCH_CHECK(code == 0, "bupose cuda op: ", what, " failed to launch (CUDA error ", code, ")");
}

void* stream() { return static_cast<void*>(at::cuda::getCurrentCUDAStream().stream()); }


at::Tensor dcn_im2col(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, int64_t kh,
                      int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  check_cuda(input, "input");
  check_cuda(offset, "offset");
  const bool has_mask = mask.numel() > 0;
  if (has_mask) check_cuda(mask, "mask");
  const c10::cuda::CUDAGuard guard(input.device());
  const DcnShape s = dcn_shape(input, offset, kh, kw, sh, sw, ph, pw, dh, dw, "bupose cuda op");
  auto cols = at::empty({s.B, s.C, s.K(), s.L()}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "bupose_dcn_im2col_cuda", [&] {
    check_launch(bupose_ops::dcn_im2col_cuda<scalar_t>(s, input.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(),
                                                       has_mask ? mask.data_ptr<scalar_t>() : nullptr,
                                                       cols.data_ptr<scalar_t>(), stream()),
                 "im2col");
  });
  return cols;
}

at::Tensor dcn_col2im(const at::Tensor& grad_cols, const at::Tensor& offset, const at::Tensor& mask,
                      const at::Tensor& input, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                      int64_t pw, int64_t dh, int64_t dw) {
  check_cuda(grad_cols, "grad_columns");
  check_cuda(offset, "offset");
  const bool has_mask = mask.numel() > 0;
  if (has_mask) check_cuda(mask, "mask");
  const c10::cuda::CUDAGuard guard(grad_cols.device());
  const DcnShape s = dcn_shape(input, offset, kh, kw, sh, sw, ph, pw, dh, dw, "bupose cuda op");
  auto grad_input = at::zeros({s.B, s.C, s.H, s.W}, grad_cols.options());
  AT_DISPATCH_FLOATING_TYPES(grad_cols.scalar_type(), "bupose_dcn_col2im_cuda", [&] {
    check_launch(bupose_ops::dcn_col2im_cuda<scalar_t>(s, grad_cols.data_ptr<scalar_t>(),
                                                       offset.data_ptr<scalar_t>(),
                                                       has_mask ? mask.data_ptr<scalar_t>() : nullptr,
                                                       grad_input.data_ptr<scalar_t>(), stream()),
                 "col2im");
  });
  return grad_input;
}

std::vector<at::Tensor> dcn_col2im_coord(const at::Tensor& grad_cols, const at::Tensor& input,
                                         const at::Tensor& offset, const at::Tensor& mask, int64_t kh,
                                         int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                                         int64_t dw) {
  check_cuda(grad_cols, "grad_columns");
  check_cuda(input, "input");
  check_cuda(offset, "offset");
  const bool has_mask = mask.numel() > 0;
  if (has_mask) check_cuda(mask, "mask");
  const c10::cuda::CUDAGuard guard(input.device());
  const DcnShape s = dcn_shape(input, offset, kh, kw, sh, sw, ph, pw, dh, dw, "bupose cuda op");
  auto grad_offset = at::empty_like(offset);
  auto grad_mask = has_mask ? at::empty_like(mask) : at::empty({0}, offset.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "bupose_dcn_coord_cuda", [&] {
    check_launch(bupose_ops::dcn_coord_cuda<scalar_t>(
                     s, grad_cols.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(),
                     has_mask ? mask.data_ptr<scalar_t>() : nullptr, grad_offset.data_ptr<scalar_t>(),
                     has_mask ? grad_mask.data_ptr<scalar_t>() : nullptr, stream()),
                 "col2im_coord");
  });
  return {grad_offset, grad_mask};
}


at::Tensor msda_forward(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& starts,
                        const at::Tensor& loc, const at::Tensor& attn) {
  for (auto* t : {&value, &shapes, &starts, &loc, &attn}) check_cuda(*t, "ms_deform_attn argument");
  const c10::cuda::CUDAGuard guard(value.device());
  const MsdaShape s = msda_shape(value, shapes, loc);
  auto out = at::empty({s.N, s.Q, s.M * s.D}, value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "bupose_msda_forward_cuda", [&] {
    check_launch(bupose_ops::msda_forward_cuda<scalar_t>(s, value.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(),
                                                         starts.data_ptr<int64_t>(), loc.data_ptr<scalar_t>(),
                                                         attn.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                                         stream()),
                 "msda_forward");
  });
  return out;
}

std::vector<at::Tensor> msda_backward(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& starts,
                                      const at::Tensor& loc, const at::Tensor& attn, const at::Tensor& grad_out) {
  for (auto* t : {&value, &shapes, &starts, &loc, &attn, &grad_out}) check_cuda(*t, "ms_deform_attn argument");
  const c10::cuda::CUDAGuard guard(value.device());
  const MsdaShape s = msda_shape(value, shapes, loc);
  auto grad_value = at::zeros_like(value);
  auto grad_loc = at::empty_like(loc);
  auto grad_attn = at::empty_like(attn);
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "bupose_msda_backward_cuda", [&] {
    check_launch(bupose_ops::msda_backward_cuda<scalar_t>(
                     s, value.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(), starts.data_ptr<int64_t>(),
                     loc.data_ptr<scalar_t>(), attn.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(),
                     grad_value.data_ptr<scalar_t>(), grad_loc.data_ptr<scalar_t>(),
                     grad_attn.data_ptr<scalar_t>(), stream()),
                 "msda_backward");
  });
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "bupose CUDA kernels: deformable convolution columns and multi-scale deformable attention";
  m.def("dcn_im2col", &dcn_im2col, "deformable im2col -> (B, C, K, L)");
  m.def("dcn_col2im", &dcn_col2im, "gradient of the input from column gradients");
  m.def("dcn_col2im_coord", &dcn_col2im_coord, "gradients of offset and mask from column gradients");
  m.def("msda_forward", &msda_forward, "multi-scale deformable attention forward");
  m.def("msda_backward", &msda_backward, "multi-scale deformable attention backward");
}
