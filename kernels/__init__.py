"""Window-attention kernels for the attention SR networks: one op with reference, SDPA and Triton backends,
plus the window helpers (partition, shift, masks, relative-position indices) that every window network needs.
"""

from kernels.attention import window_attention
from kernels.backends import NAMES as BACKENDS
from kernels.checks import ENV_VAR, BackendUnavailable, available_backends, choose_backend, why_not
from kernels.masks import (
    MASK_FILL,
    permuted_shift_window_mask,
    region_mask,
    shift_region_ids,
    shift_window_mask,
)
from kernels.positions import (
    aligned_relative_position_index,
    overlapping_relative_position_index,
    relative_position_bias,
    relative_position_coordinates,
    relative_position_index,
)
from kernels.windows import cyclic_shift, window_partition, window_reverse

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "MASK_FILL",
    "BackendUnavailable",
    "aligned_relative_position_index",
    "available_backends",
    "choose_backend",
    "cyclic_shift",
    "overlapping_relative_position_index",
    "permuted_shift_window_mask",
    "region_mask",
    "relative_position_bias",
    "relative_position_coordinates",
    "relative_position_index",
    "shift_region_ids",
    "shift_window_mask",
    "why_not",
    "window_attention",
    "window_partition",
    "window_reverse",
]
