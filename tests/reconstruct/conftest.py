"""Keep the reconstruction tests to one thread: the CI machines share their cores."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
