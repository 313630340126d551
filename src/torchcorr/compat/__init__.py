"""Drop-in replacements for the correlation layers users have today.

Each module mirrors one established API (signature, defaults, output layout) and maps it onto
:func:`torchcorr.correlate`.  Where the original is wrong, the replacement gives the values of
``semantics.md`` and its docstring says how it differs.

* :mod:`torchcorr.compat.mxnet`: ``mx.nd.Correlation``
* :mod:`torchcorr.compat.flownet2`: flownet2-pytorch's ``Correlation`` module
* :mod:`torchcorr.compat.spatial_correlation_sampler`: ``spatial_correlation_sample`` and
  ``SpatialCorrelationSampler``
* :mod:`torchcorr.compat.mmcv`: ``mmcv.ops.Correlation``
* :mod:`torchcorr.compat.tfa`: tensorflow-addons' ``CorrelationCost``
* :mod:`torchcorr.compat.corrtorch`: the pure-PyTorch ``CorrTorch`` module
* :mod:`torchcorr.compat.raft`: RAFT's ``CorrBlock`` and ``AlternateCorrBlock``
"""
