"""Run one training process (under torchrun) and save this rank's final weights to OUT/rank<r>.safetensors.

Usage: torchrun --standalone --nproc_per_node 2 tests/helpers/ddp_train.py OPTIONS.yml OUT [KEY=VALUE ...]
"""

import sys
from pathlib import Path

from safetensors.torch import save_file

from sr.options import load_train_options
from sr.train import distributed
from sr.train.trainer import Trainer

options, out = Path(sys.argv[1]), Path(sys.argv[2])
trainer = Trainer(load_train_options(options, sys.argv[3:]), options)
result = trainer.run()
tensors = {k: v.contiguous() for k, v in result.model.state_dict().items()}
save_file(tensors, str(out / f"rank{trainer.dist.rank}.safetensors"))
distributed.teardown(trainer.dist)
