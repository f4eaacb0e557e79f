"""What a measurement ran on: the machine, the library versions and the torch device.

Every benchmark writes :func:`machine_info` beside its figures, so that a number measured on
a GPU machine is never read as a 2-core CPU one (and the other way round).
"""

from __future__ import annotations

import os
import platform
from typing import Any

DEVICE_FLAG_HELP = "torch device of the measured torch paths: cpu, cuda, cuda:N or auto"


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """Platform, CPU count, load average, Python/numpy/torch versions, torch threads and, for a
    CUDA ``device``, the GPU's name and memory [GiB]."""
    import numpy as np
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
        "cpus": os.cpu_count(), "load_average": list(os.getloadavg()), "python": platform.python_version(),
        "numpy": np.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
    return info


def synchronize(device: str) -> None:
    """Wait for queued CUDA work on ``device`` (timings of asynchronous kernels need it)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))
