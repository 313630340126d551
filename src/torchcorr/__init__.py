"""torchcorr: correlation and cost-volume operators for PyTorch.

Exact, differentiable, memory-lean correlation layers for optical flow and stereo (FlowNet,
PWC-Net, RAFT, DispNetC, GwcNet), with drop-in replacements for the established implementations
in :mod:`torchcorr.compat`.
"""

from . import _autocast, ops  # ops registers the torch.library operators  # noqa: F401
from ._composite import keep_custom_ops
from ._geometry import AxisGeometry, Geometry
from .backends import backend_report
from .functional import correlate, correlation
from .modules import Correlation

_autocast.register()  # autocast kernels of the registered ops (after every op is defined)

__version__ = "0.1.0"

__all__ = [
    "AxisGeometry",
    "Correlation",
    "Geometry",
    "__version__",
    "backend_report",
    "correlate",
    "correlation",
    "keep_custom_ops",
]
