"""Batches of (index, seed) keys for training: a seeded shuffle per epoch, split across distributed ranks,
and able to start part-way through an epoch (for exact resumption).

The order and every sample's seed depend only on (seed, epoch, position), never on worker processes or on
how the run was interrupted, so a resumed run reads exactly the batches the uninterrupted run would have.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class TrainBatchSampler:
    """Yields lists of (dataset index, sample seed) of `batch_size` for one rank; the last partial batch is
    dropped, as BasicSR's training loader does."""

    def __init__(
        self,
        dataset_len: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        enlarge_ratio: int = 1,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        total = dataset_len * enlarge_ratio
        self.per_rank = total // world_size
        if self.per_rank < batch_size:
            raise ValueError(
                f"{dataset_len} training images x{enlarge_ratio} over {world_size} process(es) do not fill "
                f"one batch of {batch_size}; raise dataset_enlarge_ratio"
            )
        self.dataset_len, self.total, self.batch_size = dataset_len, total, batch_size
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        self.epoch, self.skip = 0, 0

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        return self.per_rank // self.batch_size

    def start(self, epoch: int, skip_batches: int = 0) -> None:
        """Make the next iteration cover `epoch`, beginning after its first `skip_batches` batches."""
        self.epoch, self.skip = epoch, skip_batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.total, generator=generator) if self.shuffle else torch.arange(self.total)
        positions = range(self.rank, self.per_rank * self.world_size, self.world_size)
        mine = [int(order[p]) for p in positions]
        # One 63-bit seed per (epoch, position in the epoch's order), shared by all ranks' views.
        seeds = torch.randint(0, 2**62, (self.total,), generator=generator)
        for b in range(self.skip, len(self)):
            batch = range(b * self.batch_size, (b + 1) * self.batch_size)
            yield [(mine[i] % self.dataset_len, int(seeds[positions[i]])) for i in batch]
