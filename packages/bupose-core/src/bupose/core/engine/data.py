"""Training data flow: sample order, per-sample seeding, augmentation, target encoding, batching.

Randomness never depends on the number of processes or DataLoader workers: the order of an epoch
is a permutation seeded by ``(seed, epoch)`` and the augmentation of a sample is seeded by
``(seed, epoch, index)``. Global batch ``k`` of an epoch is always the same set of samples, split
into contiguous per-rank slices, so 1 process with batch B and N processes with B/N each see the
same data, and a resumed run picks up exactly where the interrupted one stopped.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..batch import collate
from ..codec import Encoded, MissingSampleKeyError

__all__ = ["EncodedDataset", "StepBatchSampler", "collate", "epoch_permutation", "input_matrix"]


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> list[int]:
    """The order of one epoch (the same on every rank)."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63))
    return torch.randperm(num_samples, generator=g).tolist()


class StepBatchSampler:
    """Yields this rank's slice of global batches ``start_step, start_step+1, ...`` up to ``total_steps``.

    Steps run through the epochs: step ``s`` is batch ``s % steps_per_epoch`` of epoch
    ``s // steps_per_epoch``. The last incomplete global batch of an epoch is dropped.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        start_step: int = 0,
        total_steps: int,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch_size {global_batch} is not divisible by the {world_size} processes")
        if num_samples < global_batch:
            raise ValueError(f"the dataset has {num_samples} samples, fewer than one batch of {global_batch}")
        self.num_samples = num_samples
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.rank = rank
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self.steps_per_epoch = num_samples // global_batch

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def batch(self, step: int) -> tuple[int, list[int]]:
        """(epoch, this rank's sample indices) of global step ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        perm = epoch_permutation(self.num_samples, self.seed, epoch)
        lo = k * self.global_batch + self.rank * self.local_batch
        return epoch, perm[lo : lo + self.local_batch]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm: list[int] = []
        current = -1
        for step in range(self.start_step, self.total_steps):
            epoch, k = divmod(step, self.steps_per_epoch)
            if epoch != current:
                perm = epoch_permutation(self.num_samples, self.seed, epoch)
                current = epoch
            lo = k * self.global_batch + self.rank * self.local_batch
            yield [(epoch, i) for i in perm[lo : lo + self.local_batch]]


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class _SeededGlobals:
    """Seed Python/NumPy/torch global generators for one sample, restoring them afterwards."""

    def __init__(self, seed_seq: Sequence[int]) -> None:
        ss = np.random.SeedSequence(list(seed_seq))
        self.py_seed, self.np_seed, self.torch_seed = (int(v) for v in ss.generate_state(3))

    def __enter__(self) -> None:
        self.saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        random.seed(self.py_seed)
        np.random.seed(self.np_seed)
        torch.manual_seed(self.torch_seed)

    def __exit__(self, *exc: Any) -> None:
        py, npy, tch = self.saved
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(tch)


def input_matrix(sample: Mapping[str, Any]) -> np.ndarray | None:
    """The (2, 3) image -> input affine of an augmented sample, the horizontal flip included.

    Transforms report ``matrix`` before their flip and ``flipped`` (the flip being the mirror
    x -> W_input - 1 - x of the output, as ``BottomUpRandomAffine`` does); ``None`` without a matrix.
    """
    matrix = sample.get("matrix")
    if matrix is None:
        return None
    m = np.asarray(matrix, dtype=np.float64).reshape(2, 3).copy()
    if sample.get("flipped"):
        w_in = np.asarray(sample["image"]).shape[1]
        m[0] = -m[0]
        m[0, 2] += w_in - 1
    return m


class EncodedDataset(torch.utils.data.Dataset):
    """``base[i]`` -> ``transform`` (augmentation) -> ``codec.encode`` -> an item for :func:`collate`.

    Indexed by ``(epoch, index)`` pairs (see :class:`StepBatchSampler`). ``transform(sample, rng=...)``
    receives a NumPy generator seeded by ``(seed, epoch, index)`` when it accepts ``rng``; the global
    generators are seeded the same way meanwhile, so transforms using them are deterministic too.
    ``to_tensor(image)`` turns the augmented image into the network input (C, H, W) float tensor.
    ``encode`` returns a :class:`bupose.core.codec.Encoded`; ``sample_keys`` (the codec's) are
    checked on the augmented sample first.

    An item is ``{"image", "dense", "instances", "meta"}``; ``meta`` has ``image_id`` (when the
    sample has one), ``index``, ``image_hw`` (before augmentation), ``input_hw``, ``flipped`` and
    ``matrix`` (image -> input, flip included; when the transform reports one).
    """

    def __init__(
        self,
        base: Any,
        *,
        transform: Callable[..., Mapping[str, Any]] | None,
        encode: Callable[[Mapping[str, Any]], Encoded],
        to_tensor: Callable[[np.ndarray], torch.Tensor],
        seed: int = 0,
        sample_keys: Sequence[str] = (),
    ) -> None:
        self.base = base
        self.transform = transform
        self.encode = encode
        self.to_tensor = to_tensor
        self.seed = seed
        self.sample_keys = tuple(sample_keys)
        self._transform_takes_rng = transform is not None and _accepts(transform, "rng")

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        with _SeededGlobals((self.seed, epoch, index)):
            raw = self.base[index]
            image_hw = tuple(int(v) for v in np.asarray(raw["image"]).shape[:2])
            sample = raw
            if self.transform is not None:
                if self._transform_takes_rng:
                    rng = np.random.default_rng([self.seed, epoch, index, 7])
                    sample = self.transform(raw, rng=rng)
                else:
                    sample = self.transform(raw)
            missing = [k for k in self.sample_keys if k not in sample]
            if missing:
                raise MissingSampleKeyError(
                    f"sample {index}: the augmented sample lacks {', '.join(map(repr, missing))} that the codec "
                    f"reads (it has {', '.join(sorted(map(str, sample)))}); the transform must produce it"
                )
            encoded = self.encode(sample)
            image = self.to_tensor(sample["image"])
        if not isinstance(encoded, Encoded):
            raise TypeError(
                f"codec.encode must return a bupose.core.codec.Encoded (dense + instances), got {type(encoded).__name__}"
            )
        meta: dict[str, Any] = {
            "index": int(index),
            "image_hw": image_hw,
            "input_hw": tuple(int(v) for v in np.asarray(sample["image"]).shape[:2]),
            "flipped": bool(sample.get("flipped", False)),
        }
        if sample.get("image_id") is not None:
            meta["image_id"] = sample["image_id"]
        matrix = input_matrix(sample)
        if matrix is not None:
            meta["matrix"] = matrix
        return {
            "image": torch.as_tensor(image),
            "dense": dict(encoded.dense),
            "instances": dict(encoded.instances),
            "meta": meta,
        }
