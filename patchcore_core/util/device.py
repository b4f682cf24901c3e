"""``device="auto"``: CUDA when present, else CPU; resolved once."""

from __future__ import annotations

import re

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")  # cuda:N picks one of several GPUs


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):  # mps: Apple GPUs, unadvertised
        # torch.device("gpu") would answer with every device type torch knows of
        raise ValueError(f"unknown device {str(device)!r}; use {', '.join(DEVICE_CHOICES)} "
                         "(or cuda:N for the N-th GPU)")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available here; "
                         "use device='cpu' or 'auto'")
    return device
