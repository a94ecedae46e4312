"""One place for device arguments: the same checks and messages wherever a
device is accepted (Trainer, Sampler.to, the CLI)."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch


def resolve_device(who: str, device: Any) -> torch.device:
    r""":obj:`device` as a :class:`torch.device`; :obj:`"auto"` is CUDA when
    available, else the CPU. Raises a :class:`ValueError` naming :obj:`who`
    for anything that is not a device, and for CUDA where there is none."""
    if isinstance(device, str) and device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{who}: 'device' must be 'cpu', 'cuda', 'cuda:N' "
                         f"or 'auto' (got {device!r})") from e
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"{who}: device={str(dev)!r} but CUDA is not "
                         f"available here; use 'cpu' or 'auto'")
    return dev


def resolve_module_to_args(who: str, args: Tuple, kwargs: Dict
                           ) -> Tuple[Tuple, Dict]:
    r"""The arguments of :meth:`torch.nn.Module.to` with their device (the
    first positional argument unless it is a dtype or a tensor, or
    :obj:`device=`) checked and resolved by :func:`resolve_device`."""
    if args and not isinstance(args[0], (torch.dtype, torch.Tensor)):
        args = (resolve_device(who, args[0]), ) + tuple(args[1:])
    elif isinstance(kwargs.get('device'), (str, torch.device)):
        kwargs = {**kwargs, 'device': resolve_device(who, kwargs['device'])}
    return args, kwargs
