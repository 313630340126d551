"""torchcorr: correlation and cost-volume operators for PyTorch.

Exact, differentiable, memory-lean correlation layers for optical flow and stereo (FlowNet,
PWC-Net, RAFT, DispNetC, GwcNet), with drop-in replacements for the established implementations
in :mod:`torchcorr.compat`.
"""

from . import ops  # registers the torch.library operators  # noqa: F401
from ._geometry import AxisGeometry, Geometry
from .backends import backend_report
from .functional import correlate, correlation
from .modules import Correlation
from .raft import all_pairs, alternate_lookup, correlation_pyramid, local_lookup, pyramid_lookup

__version__ = "0.1.0"

__all__ = [
    "AxisGeometry",
    "Correlation",
    "Geometry",
    "__version__",
    "all_pairs",
    "alternate_lookup",
    "backend_report",
    "correlate",
    "correlation",
    "correlation_pyramid",
    "local_lookup",
    "pyramid_lookup",
]
