// Launchers of the CUDA kernels (cuda_kernels.cu). Plain C++: no torch or CUDA headers needed to
// include this file; `stream` is a cudaStream_t passed as void*. Each launcher returns 0 on success
// or a CUDA error code (cudaError_t as int). Pointers are device pointers to contiguous tensors;
// `mask`/`grad_mask` may be null. Outputs written with atomics (grad_input, grad_value) must be
// zero-filled by the caller.
#pragma once

#include <stdint.h>

#include "ops_math.h"

namespace bupose_ops {

template <typename T>
int dcn_im2col_cuda(const DcnShape& s, const T* input, const T* offset, const T* mask, T* columns, void* stream);

template <typename T>
int dcn_col2im_cuda(const DcnShape& s, const T* grad_columns, const T* offset, const T* mask, T* grad_input,
                    void* stream);

template <typename T>
int dcn_coord_cuda(const DcnShape& s, const T* grad_columns, const T* input, const T* offset, const T* mask,
                   T* grad_offset, T* grad_mask, void* stream);

template <typename T>
int msda_forward_cuda(const MsdaShape& s, const T* value, const int64_t* shapes, const int64_t* starts,
                      const T* loc, const T* attn, T* out, void* stream);

template <typename T>
int msda_backward_cuda(const MsdaShape& s, const T* value, const int64_t* shapes, const int64_t* starts,
                       const T* loc, const T* attn, const T* grad_out, T* grad_value, T* grad_loc, T* grad_attn,
                       void* stream);

}  // namespace bupose_ops
