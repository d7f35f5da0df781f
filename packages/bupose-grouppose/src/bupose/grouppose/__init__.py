"""bupose-grouppose: GroupPose (ICCV 2023), a DETR-style set predictor for multi-person pose.

Head ``grouppose`` (:class:`~bupose.grouppose.model.GroupPoseHead`), its official checkpoints
(:mod:`bupose.grouppose.convert`), the official val pipeline (:mod:`bupose.grouppose.pipeline`),
post-processing (:mod:`bupose.grouppose.postprocess`) and training pieces (codec, DETR augmentation,
Hungarian matcher and set criterion).
"""

__version__ = "0.1.0"
