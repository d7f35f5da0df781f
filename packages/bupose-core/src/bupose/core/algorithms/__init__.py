"""Method-neutral algorithms shared by bottom-up pose methods.

Plain, typed functions; every method quirk (rounding rule, flip shift, pool kernel, NMS ranking,
sigma per channel...) is an argument, never a constant of one method.

- :mod:`~bupose.core.algorithms.geometry`: test-time resize rule, centre/scale affine and inverse,
  training crop affine, warps of images and masks, back-projection;
- :mod:`~bupose.core.algorithms.image`: ImageNet mean/std, batching, normalisation;
- :mod:`~bupose.core.algorithms.tta`: flip of inputs and outputs, mirroring, averaging, up-sampling;
- :mod:`~bupose.core.algorithms.maps`: peak NMS, top-k, bilinear sampling, quarter-offset refinement;
- :mod:`~bupose.core.algorithms.nms`: greedy pose NMS;
- :mod:`~bupose.core.algorithms.oks`: OKS (numpy, bit-identical to pycocotools; torch twin);
- :mod:`~bupose.core.algorithms.targets`: Gaussian heatmaps, displacement fields, centres, areas.
"""
