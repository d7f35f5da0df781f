// CUDA kernels for deform_conv2d's column transforms and ms_deform_attn, in plain CUDA C++ (no
// torch headers): cuda_binding.cpp is the thin torch binding. Instantiated for float and double.
#include <cuda_runtime.h>

#include "cuda_kernels.h"
#include "ops_math.h"

namespace bupose_ops {
namespace {

constexpr int kThreads = 256;

struct AtomicAdd {
  template <typename T>
  __device__ void operator()(T* p, T v) const { atomicAdd(p, v); }
};

inline int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}

#define BUPOSE_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

template <typename T>
__global__ void im2col_kernel(DcnShape s, const T* input, const T* offset, const T* mask, T* cols, int64_t n) {
  BUPOSE_GRID_LOOP(idx, n) {
    const int64_t l = idx % s.L();
    const int64_t k = (idx / s.L()) % s.K();
    const int64_t c = (idx / (s.L() * s.K())) % s.C;
    const int64_t b = idx / (s.L() * s.K() * s.C);
    cols[idx] = dcn_im2col_element(s, input, offset, mask, b, c, k, l);
  }
}

template <typename T>
__global__ void col2im_kernel(DcnShape s, const T* grad_cols, const T* offset, const T* mask, T* grad_input,
                              int64_t n) {
  const AtomicAdd add;
  BUPOSE_GRID_LOOP(idx, n) {
    const int64_t l = idx % s.L();
    const int64_t k = (idx / s.L()) % s.K();
    const int64_t c = (idx / (s.L() * s.K())) % s.C;
    const int64_t b = idx / (s.L() * s.K() * s.C);
    dcn_col2im_element(s, grad_cols, offset, mask, grad_input, b, c, k, l, add);
  }
}

template <typename T>
__global__ void coord_kernel(DcnShape s, const T* grad_cols, const T* input, const T* offset, const T* mask,
                             T* grad_offset, T* grad_mask, int64_t n) {
  BUPOSE_GRID_LOOP(idx, n) {
    const int64_t l = idx % s.L();
    const int64_t k = (idx / s.L()) % s.K();
    const int64_t og = (idx / (s.L() * s.K())) % s.OG;
    const int64_t b = idx / (s.L() * s.K() * s.OG);
    dcn_coord_element(s, grad_cols, input, offset, mask, grad_offset, grad_mask, b, og, k, l);
  }
}

template <typename T>
__global__ void msda_forward_kernel(MsdaShape s, const T* value, const int64_t* shapes, const int64_t* starts,
                                    const T* loc, const T* attn, T* out, int64_t n) {
  BUPOSE_GRID_LOOP(idx, n) {
    const int64_t d = idx % s.D;
    const int64_t m = (idx / s.D) % s.M;
    const int64_t q = (idx / (s.D * s.M)) % s.Q;
    const int64_t b = idx / (s.D * s.M * s.Q);
    out[idx] = msda_forward_element(s, value, shapes, starts, loc, attn, b, q, m, d);
  }
}

template <typename T>
__global__ void msda_backward_kernel(MsdaShape s, const T* value, const int64_t* shapes, const int64_t* starts,
                                     const T* loc, const T* attn, const T* grad_out, T* grad_value, T* grad_loc,
                                     T* grad_attn, int64_t n) {
  const AtomicAdd add;
  BUPOSE_GRID_LOOP(idx, n) {
    const int64_t p = idx % s.P;
    const int64_t lv = (idx / s.P) % s.L;
    const int64_t m = (idx / (s.P * s.L)) % s.M;
    const int64_t q = (idx / (s.P * s.L * s.M)) % s.Q;
    const int64_t b = idx / (s.P * s.L * s.M * s.Q);
    msda_backward_element(s, value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn, b, q, m,
                          lv, p, add);
  }
}

inline int last_error() { return static_cast<int>(cudaGetLastError()); }

}  // namespace

template <typename T>
int dcn_im2col_cuda(const DcnShape& s, const T* input, const T* offset, const T* mask, T* columns, void* stream) {
  const int64_t n = s.B * s.C * s.K() * s.L();
  if (n == 0) return 0;
  im2col_kernel<T><<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(s, input, offset, mask,
                                                                                        columns, n);
  return last_error();
}

template <typename T>
int dcn_col2im_cuda(const DcnShape& s, const T* grad_columns, const T* offset, const T* mask, T* grad_input,
                    void* stream) {
  const int64_t n = s.B * s.C * s.K() * s.L();
  if (n == 0) return 0;
  col2im_kernel<T><<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(s, grad_columns, offset,
                                                                                        mask, grad_input, n);
  return last_error();
}

template <typename T>
int dcn_coord_cuda(const DcnShape& s, const T* grad_columns, const T* input, const T* offset, const T* mask,
                   T* grad_offset, T* grad_mask, void* stream) {
  const int64_t n = s.B * s.OG * s.K() * s.L();
  if (n == 0) return 0;
  coord_kernel<T><<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      s, grad_columns, input, offset, mask, grad_offset, grad_mask, n);
  return last_error();
}

template <typename T>
int msda_forward_cuda(const MsdaShape& s, const T* value, const int64_t* shapes, const int64_t* starts,
                      const T* loc, const T* attn, T* out, void* stream) {
  const int64_t n = s.N * s.Q * s.M * s.D;
  if (n == 0) return 0;
  msda_forward_kernel<T><<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      s, value, shapes, starts, loc, attn, out, n);
  return last_error();
}

template <typename T>
int msda_backward_cuda(const MsdaShape& s, const T* value, const int64_t* shapes, const int64_t* starts,
                       const T* loc, const T* attn, const T* grad_out, T* grad_value, T* grad_loc, T* grad_attn,
                       void* stream) {
  const int64_t n = s.N * s.Q * s.M * s.L * s.P;
  if (n == 0) return 0;
  msda_backward_kernel<T><<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      s, value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn, n);
  return last_error();
}

#define BUPOSE_INSTANTIATE(T)                                                                                      \
  template int dcn_im2col_cuda<T>(const DcnShape&, const T*, const T*, const T*, T*, void*);                      \
  template int dcn_col2im_cuda<T>(const DcnShape&, const T*, const T*, const T*, T*, void*);                      \
  template int dcn_coord_cuda<T>(const DcnShape&, const T*, const T*, const T*, const T*, T*, T*, void*);         \
  template int msda_forward_cuda<T>(const MsdaShape&, const T*, const int64_t*, const int64_t*, const T*,         \
                                    const T*, T*, void*);                                                           \
  template int msda_backward_cuda<T>(const MsdaShape&, const T*, const int64_t*, const int64_t*, const T*,        \
                                     const T*, const T*, T*, T*, T*, void*);

BUPOSE_INSTANTIATE(float)
BUPOSE_INSTANTIATE(double)

}  // namespace bupose_ops
