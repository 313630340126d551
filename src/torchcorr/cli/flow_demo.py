"""Optical flow on real data: a scikit-image photograph warped by a known smooth flow.

Frame 1 is the photograph sampled at p + f(p) for a smooth random flow f (grid_sample), so f is
the true flow from frame 1 to frame 2.  The flow is estimated coarse to fine on an image pyramid:
at every level a local cost volume of radius --radius (torchcorr.correlation with a window) around
each pixel, winner-take-all with a sub-pixel parabola, a 3 x 3 median, and the upsampled flow as
the starting point of the next level.  Prints the end-point error (mean distance between estimated
and true flow vectors, in pixels, lower is better) next to that of a zero flow, and writes flow.png
(frames, colour-coded true and estimated flow, error map) and flow_metrics.json into --out.
Needs the demo extra: pip install "torchcorr[demo]".
"""

from __future__ import annotations

import argparse

HELP = "optical flow on a warped photograph: coarse-to-fine local cost volumes, error and figure"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``torchcorr flow-demo``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--out", default="torchcorr-demo", metavar="DIR", help="output folder (default ./%(default)s)")
    parser.add_argument(
        "--image",
        choices=("astronaut", "chelsea", "coffee", "camera"),
        default="astronaut",
        help="scikit-image sample photograph (default %(default)s)",
    )
    parser.add_argument(
        "--scale", type=int, default=2, help="shrink the photograph by this factor first (default %(default)s)"
    )
    parser.add_argument(
        "--max-flow",
        type=float,
        default=10.0,
        metavar="PX",
        help="largest motion of the synthetic flow, in working-scale pixels (default %(default)s)",
    )
    parser.add_argument("--levels", type=int, default=3, help="pyramid levels (default %(default)s)")
    parser.add_argument(
        "--radius", type=int, default=3, help="search radius per level, in that level's pixels (default %(default)s)"
    )
    parser.add_argument(
        "--window", type=int, default=7, help="odd side of the correlation window (default %(default)s)"
    )
    parser.add_argument(
        "--features",
        choices=("census", "patch", "gray"),
        default="patch",
        help="fixed per-pixel features (default %(default)s: normalised 5x5 patches)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic flow (default %(default)s)")
    parser.add_argument("--backend", default=None, help="torchcorr backend (default: automatic)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the flow demo and print its metrics."""
    try:
        from torchcorr.demo.flow import FlowConfig
        from torchcorr.demo.flow import run as run_flow

        config = FlowConfig(
            image=args.image,
            scale=args.scale,
            max_flow=args.max_flow,
            levels=args.levels,
            radius=args.radius,
            window=args.window,
            features=args.features,
            seed=args.seed,
            backend=args.backend,
        )
        if config.reach < config.max_flow:
            print(
                f"torchcorr flow-demo: note: {config.levels} levels of radius {config.radius} reach "
                f"{config.reach} px, less than --max-flow {config.max_flow:g}"
            )
        result = run_flow(config, out_dir=args.out, progress=not args.no_progress)
    except (ImportError, ValueError) as exc:
        print(f"torchcorr flow-demo: {exc}")
        return 2
    m = result["metrics"]
    print(
        f"flow demo: {config.image} at {m['resolution']}, synthetic flow up to {config.max_flow:g} px, "
        f"pyramid {' -> '.join(m['levels'])}, radius {config.radius} ({(2 * config.radius + 1) ** 2} displacements)"
    )
    print(
        f"  EPE {m['epe']:.2f} px (zero flow {m['epe_zero_flow']:.2f} px; lower is better), "
        f"{m['within_1px']:.1f} % within 1 px, {m['within_3px']:.1f} % within 3 px"
    )
    env = m["environment"]
    print(
        f"  {m['seconds_total']:.1f} s on {env['threads']} threads, backend {m['backend']!r}, torch {env['torch']}, "
        f"torchcorr {env['torchcorr']}"
    )
    print(f"  wrote {args.out}/flow.png and {args.out}/flow_metrics.json")
    return 0
