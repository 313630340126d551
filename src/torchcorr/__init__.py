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
from .raft import all_pairs, alternate_lookup, correlation_pyramid, local_lookup, pyramid_lookup
from .volumes import (
    ConcatVolume,
    CostVolume,
    GroupwiseCorrelation,
    StereoCorrelation,
    concat_volume,
    cost_volume,
    groupwise_correlation,
    stereo_correlation,
)
from .xcorr import xcorr2

_autocast.register()  # autocast kernels of the registered ops (after every op is defined)

__version__ = "0.1.0"

__all__ = [
    "AxisGeometry",
    "ConcatVolume",
    "Correlation",
    "CostVolume",
    "Geometry",
    "GroupwiseCorrelation",
    "StereoCorrelation",
    "__version__",
    "all_pairs",
    "alternate_lookup",
    "backend_report",
    "concat_volume",
    "correlate",
    "correlation",
    "correlation_pyramid",
    "cost_volume",
    "groupwise_correlation",
    "keep_custom_ops",
    "local_lookup",
    "pyramid_lookup",
    "stereo_correlation",
    "xcorr2",
]
