"""The autocast policy of torchcorr.

Correlation is a contraction over channels, like a matrix product, so it follows the policy
``torch.autocast`` applies to ``matmul`` and ``conv2d``:

* Inside ``torch.autocast(device_type, dtype=X)`` (``X`` float16 or bfloat16, on any device whose
  autocast is enabled: CPU, CUDA, ...), the feature maps of that device are cast to ``X``, the
  correlation runs in ``X`` with float32 accumulation (every backend accumulates float16 and
  bfloat16 in float32), and the result has dtype ``X``.  Gradients come back in the inputs'
  original dtypes (autograd runs the casts backwards).
* float64 inputs are never cast (as in torch's own autocast), and tensors on a device whose
  autocast is off are left alone.
* Outside autocast nothing is cast: the op runs in the dtype of its inputs.

The faces apply the cast in :func:`torchcorr.functional.correlate` before they check that both
inputs share a dtype (so a bfloat16 feature map from a convolution and a float32 one can meet
under autocast); :func:`register` adds the same rule as an autocast kernel of the registered ops,
for code that calls ``torch.ops.torchcorr.*`` itself (and for scripted modules).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["autocast_dtype", "cast_inputs", "register"]

#: registered ops whose tensor inputs are all feature maps (cast under autocast)
FEATURE_OPS = ("correlation",)

_libs: list[torch.library.Library] = []


def _device_types() -> tuple[str, ...]:
    names = ["cpu", "cuda", "xpu", "mps", "hpu", "mtia", "meta"]
    try:
        names.append(torch._C._get_privateuse1_backend_name())
    except Exception:  # pragma: no cover - older torch
        pass
    return tuple(names)


#: Whether autocast exists for a device type, asked once per type outside any trace: TorchDynamo
#: (torch 2.11 and earlier, seen on the first GPU run) cannot trace ``torch.amp.is_autocast_available``
#: and ``torch.compile(fullgraph=True)`` of every face failed on it.
_AVAILABLE: dict[str, bool] = {}


def _autocast_available(device_type: str) -> bool:
    ok = _AVAILABLE.get(device_type)
    if ok is None:
        ok = _AVAILABLE[device_type] = bool(torch.amp.is_autocast_available(device_type))
    return ok


for _name in _device_types():
    _autocast_available(_name)
del _name


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast runs lower-precision ops in on ``device_type``, or ``None`` if it is off."""
    if not _autocast_available(device_type) or not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def _eligible(t: Any, device_type: str) -> bool:
    return isinstance(t, Tensor) and t.is_floating_point() and t.dtype != torch.float64 and t.device.type == device_type


def cast_inputs(*tensors: Any) -> tuple[Any, ...]:
    """Cast the floating (not float64) tensors to the autocast dtype of their device, if it is on.

    Anything else (non-tensors included) passes through, so the face's checks still see it.
    """
    out = []
    for t in tensors:
        if isinstance(t, Tensor):
            dtype = autocast_dtype(t.device.type)
            if dtype is not None and _eligible(t, t.device.type):
                t = t.to(dtype)
        out.append(t)
    return tuple(out)


def _kernel_for(op: torch._ops.OpOverload, device_type: str, key: torch._C.DispatchKey):
    def run(*args: Any) -> Any:
        dtype = torch.get_autocast_dtype(device_type)
        cast = [a.to(dtype) if _eligible(a, device_type) else a for a in args]
        with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(key)):
            return op(*cast)

    return run


def register(names: tuple[str, ...] = FEATURE_OPS) -> None:
    """Register the policy as the autocast kernel of ``torchcorr::<name>`` for every autocast device.

    The cast dtype is read from the active autocast context at call time (``torch.library.
    register_autocast`` would fix one dtype per device at registration).
    """
    lib = torch.library.Library("torchcorr", "IMPL")
    _libs.append(lib)
    for name in names:
        packet = getattr(torch.ops.torchcorr, name, None)
        if packet is None:
            continue
        op = packet.default
        for device_type in ("cpu", "cuda", "xpu", "mps"):
            try:
                if not torch._C._is_autocast_available(device_type):
                    continue
                key_name = "Autocast" + torch._C._dispatch_key_for_device(device_type)
                key = getattr(torch._C.DispatchKey, key_name)
            except (AttributeError, RuntimeError):
                continue
            run = _kernel_for(op, device_type, key)
            if op.has_kernel_for_dispatch_key(key):
                op.py_kernels.pop(key, None)
            op.py_impl(key)(run)  # used when tracing with the Python dispatcher (compile, export)

            def kernel(_keyset: Any, *args: Any, _run: Any = run) -> Any:
                return _run(*args)

            lib.impl(name, kernel, key_name, with_keyset=True)
