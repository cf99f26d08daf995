"""Real-ESRGAN's training-pair pool (`RealESRGANModel._dequeue_and_enqueue`): batches pass through a shuffled
pool of `size` pairs, so one batch mixes pairs degraded for different steps.

The pool fills with the first size / batch batches (which are trained on as they come); after that each
batch goes into the pool and a random batch of older pairs comes out. Its contents and its own random
generator (not torch's global one, which DataLoader iterators draw from when they start) are part of the
training state, so a resumed run draws exactly what the uninterrupted one did.
"""

from __future__ import annotations

import torch


class PairPool:
    """A pool of `size` samples of every tensor in a batch dict ("lq", "gt", "gt_usm", ...)."""

    def __init__(self, size: int, batch_size: int, seed: int = 0) -> None:
        if size % batch_size:
            raise ValueError(f"queue_size {size} must be a multiple of the batch size {batch_size}")
        self.size, self.filled = size, 0
        self.tensors: dict[str, torch.Tensor] = {}
        self.generator = torch.Generator().manual_seed(seed)

    def exchange(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch to train on: `batch` itself while the pool fills, then a random batch from the pool
        (which takes `batch`'s place)."""
        b = next(iter(batch.values())).shape[0]
        if not self.tensors:
            self.tensors = {k: v.new_zeros((self.size, *v.shape[1:])) for k, v in batch.items()}
        if self.filled < self.size:
            for key, value in batch.items():
                self.tensors[key][self.filled : self.filled + b] = value
            self.filled += b
            return batch
        order = torch.randperm(self.size, generator=self.generator)
        out = {}
        for key, value in batch.items():
            pool = self.tensors[key][order]
            out[key] = pool[:b].clone()
            pool[:b] = value
            self.tensors[key] = pool
        return out

    def state_dict(self) -> dict:
        return {"filled": self.filled, "tensors": self.tensors, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.filled, self.tensors = state["filled"], dict(state["tensors"])
        self.generator.set_state(state["generator"])
