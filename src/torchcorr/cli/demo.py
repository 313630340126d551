"""Stereo matching on real data: the Middlebury "motorcycle" pair that scikit-image ships.

Builds a one-sided horizontal correlation cost volume over the full disparity range (a
torchcorr.correlation with a window), takes the best disparity per pixel with a sub-pixel parabola
fit, rejects pixels that fail a left-right consistency check, and compares the result with the
ground truth at full resolution: bad-2.0 (percent of pixels with ground truth that are off by more
than 2 px, lower is better) and end-point error (mean absolute error in px).  Writes stereo.png
(left image, our disparity, ground truth, error map) and stereo_metrics.json into --out.
Needs the demo extra: pip install "torchcorr[demo]".
"""

from __future__ import annotations

import argparse

HELP = "stereo matching on the Middlebury motorcycle pair: metrics, figure and JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``torchcorr demo``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--out", default="torchcorr-demo", metavar="DIR", help="output folder (default ./%(default)s)")
    parser.add_argument(
        "--scale",
        type=int,
        default=2,
        help="shrink the 741 x 500 pair by this factor before matching (default %(default)s: 370 x 250; "
        "1 is the full pair, slower)",
    )
    parser.add_argument(
        "--max-disparity",
        type=int,
        default=64,
        metavar="PX",
        help="disparity search range in full-resolution pixels (default %(default)s; the truth spans 7-60)",
    )
    parser.add_argument(
        "--window", type=int, default=5, help="odd side of the correlation window (default %(default)s)"
    )
    parser.add_argument(
        "--features",
        choices=("census", "patch", "gray"),
        default="census",
        help="fixed per-pixel features: soft census transform (default), normalised 5x5 patches, or the "
        "grayscale intensity (use with --ncc)",
    )
    parser.add_argument("--ncc", action="store_true", help="zero-mean normalised correlation over the window")
    parser.add_argument(
        "--lr-threshold",
        type=float,
        default=1.0,
        metavar="PX",
        help="left-right check: largest disagreement kept, in working-scale pixels (default %(default)s)",
    )
    parser.add_argument("--backend", default=None, help="torchcorr backend (default: automatic)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the stereo demo and print its metrics."""
    try:
        from torchcorr.demo.stereo import StereoConfig
        from torchcorr.demo.stereo import run as run_stereo

        config = StereoConfig(
            scale=args.scale,
            max_disparity=args.max_disparity,
            window=args.window,
            features=args.features,
            ncc=args.ncc,
            lr_threshold=args.lr_threshold,
            backend=args.backend,
        )
        result = run_stereo(config, out_dir=args.out, progress=not args.no_progress)
    except (ImportError, ValueError) as exc:
        print(f"torchcorr demo: {exc}")
        return 2
    m = result["metrics"]
    print(
        f"stereo demo: Middlebury motorcycle at {m['resolution']} (1/{config.scale} of {m['full_resolution']}), "
        f"{m['disparities']} disparities, cost volume {tuple(m['cost_volume_shape'])}"
    )
    print(
        f"  bad-2.0 {m['bad2_all']:5.1f} %   EPE {m['epe_all']:.2f} px   "
        f"(all {m['pixels_with_ground_truth']} pixels with ground truth, full resolution; lower is better)"
    )
    print(
        f"  bad-2.0 {m['bad2_consistent']:5.1f} %   EPE {m['epe_consistent']:.2f} px   "
        f"(the {100 * m['density']:.1f} % that pass the left-right check)"
    )
    env = m["environment"]
    print(
        f"  {m['seconds_total']:.1f} s on {env['threads']} threads, backend {m['backend']!r}, torch {env['torch']}, "
        f"torchcorr {env['torchcorr']}"
    )
    print(f"  wrote {args.out}/stereo.png and {args.out}/stereo_metrics.json")
    return 0
