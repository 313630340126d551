"""Demos on real data: stereo matching (:mod:`.stereo`) and optical flow (:mod:`.flow`).

They need the ``demo`` extra (``pip install "torchcorr[demo]"``: scikit-image for the images,
matplotlib for the figures, tqdm for the progress bar, optional).  The command-line faces are
``python -m torchcorr demo`` and ``python -m torchcorr flow-demo``.
"""
