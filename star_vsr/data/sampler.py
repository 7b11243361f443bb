"""A shuffling sampler whose order depends only on (seed, epoch): the basis of exact resumption."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from star_vsr.data.base import check_seed
from star_vsr.errors import check_true_or_false, check_whole_number


class EpochShuffleSampler(Sampler[int]):
    """Indices 0..n-1 in an order fixed by ``(seed, epoch)``; ``set_epoch`` moves to the next order.

    Unlike ``RandomSampler`` it keeps no generator state between epochs, so a run resumed in the
    middle of an epoch sees the same order as the run it continues (Accelerate's
    ``skip_first_batches`` then drops the batches already trained on). Every process computes
    the same order; Accelerate shards the batches between processes.

    Parameters:
        num_samples: dataset length n.
        seed: base seed of the permutations.
        shuffle: False yields 0..n-1 in order every epoch.
    """

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True) -> None:
        check_whole_number("num_samples", num_samples, 1)  # (2.5 was cut to 2)
        check_seed(seed)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.shuffle = check_true_or_false("shuffle", shuffle)  # ("no" shuffled)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        check_whole_number("epoch", epoch, 0)  # (-1 failed at the next iteration, in NumPy's seeding)
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.num_samples))
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, dtype=np.uint64)[0]
        generator = torch.Generator().manual_seed(int(state >> np.uint64(1)))
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())
