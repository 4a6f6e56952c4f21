"""`python tests/fsdp_cpu_launch.py fit ...` under torchrun: `python -m train fit ...` with FSDP turned on for CPU
processes.

torch's FSDP2 (`fully_shard`) runs on CPU over gloo, but accelerate turns FSDP on only for GPU-like devices: with
CPU processes it stays `MULTI_CPU` and the Trainer would train unsharded (train.fit refuses that). This launcher,
for tests only, makes accelerate's state FSDP wherever it would be `MULTI_CPU`, with the FSDP plugin the Trainer
made (accelerate builds its state more than once; the later calls get no plugin).
"""

from __future__ import annotations

import runpy
import sys
from typing import Any

import accelerate.state
from accelerate.utils import DistributedType

original_init = accelerate.state.AcceleratorState.__init__
plugins: list[Any] = []


def init(self: Any, *args: Any, fsdp_plugin: Any = None, **kwargs: Any) -> None:
    original_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and not plugins:
        plugins.append(fsdp_plugin)
    if plugins and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = plugins[0]


accelerate.state.AcceleratorState.__init__ = init
sys.argv = ["train", *sys.argv[1:]]
runpy.run_module("train", run_name="__main__", alter_sys=True)
