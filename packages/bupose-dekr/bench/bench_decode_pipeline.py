"""DEKR decode and the whole DEKR pipeline, BEFORE vs AFTER a change, in one run (CPU).

    python packages/bupose-dekr/bench/bench_decode_pipeline.py [--before main] [--repeats 20]

BEFORE is the code of a git commit (``--before``, default ``main``): its ``bupose-core``,
``bupose-hrnet`` and ``bupose-dekr`` sources are exported with ``git archive`` into a temporary
folder. AFTER is this checkout. Each side runs in its own interpreter (``python -S`` with the side's
source folders first on ``sys.path`` and site-packages appended without its ``.pth`` files, so the
editable installs cannot leak the other side's code); both time the same work:

1. decode alone: ``DEKRDecoder.decode`` on crafted outputs (30 people, flip test, 512x832
   network input, COCO), median ms;
2. the whole pipeline: ``DEKRPipeline.predict_batch`` (warp, network on plain + flipped input,
   decode) with ``hrnet_w18_small`` at ``--input-size``, batch 1 and ``--images``, median ms/image.

With ``--with-ops`` both sides also take ``bupose-cuda-ops`` from their own tree (BEFORE's C++
extension is built in place first, ~2 min), so that kernel changes are measured too; AFTER's must be
built already (an editable install).

Each side runs ``--rounds`` times, alternating which goes first; the table prints the median over
the rounds of each side's medians and AFTER / BEFORE (< 1 means faster), for wall time and for the
process's CPU time (``time.process_time``: with one torch thread it counts only this side's work, so
it stays meaningful when other processes share the cores, where wall time does not). Both sides'
decoded poses are compared (they must be identical).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SRC_DIRS = ("packages/bupose-core/src", "packages/bupose-hrnet/src", "packages/bupose-dekr/src")
OPS_DIR = "packages/bupose-cuda-ops"


def _child(tree: Path, args: argparse.Namespace) -> None:
    """Time one side (run under ``python -S``); print one JSON line."""
    dirs = [*SRC_DIRS, f"{OPS_DIR}/src"] if args.with_ops else list(SRC_DIRS)
    sys.path[:0] = [str(tree / d) for d in dirs] + [str(HERE)]
    for p in os.environ["BUPOSE_BENCH_SITE"].split(os.pathsep):
        if p not in sys.path:
            sys.path.append(p)
    import numpy as np
    import torch

    import bupose.core
    import bupose.dekr

    torch.set_num_threads(args.threads)
    from bench_dekr import crafted_outputs, demo_pipeline

    from bupose.dekr.decode import DEKRDecoder

    def timed(fn, repeats: int) -> tuple[float, float]:
        """Median wall seconds and median CPU seconds of this process (``process_time``) per call."""
        fn()
        ts, cs = [], []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            fn()
            ts.append(time.perf_counter() - t)
            cs.append(time.process_time() - c)
        return statistics.median(ts), statistics.median(cs)

    dec = DEKRDecoder("coco17")
    outs = crafted_outputs()
    poses = dec.decode(outs)
    wall, cpu = timed(lambda: dec.decode(outs), args.repeats)
    from bupose.core import ops

    result = {
        "module": f"{Path(bupose.core.__file__).parent} + {Path(bupose.dekr.__file__).parent}",
        "deform_conv2d": ops.selected_implementation("deform_conv2d", "cpu"),
        "decode_ms": wall * 1e3,
        "decode_cpu_ms": cpu * 1e3,
        "decode_poses": np.round(poses.keypoints.astype(np.float64), 5).tolist(),
        "decode_scores": np.round(np.asarray(poses.scores, np.float64), 6).tolist(),
    }
    if not args.skip_pipeline:
        pipe, images = demo_pipeline(args.backbone, args.input_size, args.images)
        for bs in (1, args.images):

            def run(bs: int = bs) -> None:
                for i in range(0, len(images), bs):
                    pipe.predict_batch(images[i : i + bs])

            wall, cpu = timed(run, args.pipeline_repeats)
            result[f"pipeline_bs{bs}_ms"] = wall / len(images) * 1e3
            result[f"pipeline_bs{bs}_cpu_ms"] = cpu / len(images) * 1e3
        got = pipe.predict_batch(images[:1])[0]
        result["pipeline_poses"] = np.round(got.keypoints.astype(np.float64), 4).tolist()
    print("RESULT " + json.dumps(result))


def _export(ref: str, dest: Path, with_ops: bool = False) -> str:
    """Export ``ref``'s source folders (and with ``with_ops`` its cuda-ops package, its C++
    extension built in place) into ``dest``; return the commit id."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    archive = dest / "src.tar"
    with open(archive, "wb") as f:
        dirs = [*SRC_DIRS, OPS_DIR] if with_ops else list(SRC_DIRS)
        subprocess.run(["git", "-C", str(REPO), "archive", commit, *dirs], check=True, stdout=f)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    if with_ops:
        env = {**os.environ, "BUPOSE_OPS_NO_CUDA": "1"}
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=dest / OPS_DIR, check=True,
                       env=env, capture_output=True)
    return commit


def _run_side(tree: Path, argv: list[str]) -> dict:
    import site

    env = {
        **os.environ,
        "PYTHONNOUSERSITE": "1",
        "BUPOSE_BENCH_SITE": os.pathsep.join(site.getsitepackages()),
    }
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-S", str(Path(__file__).resolve()), "--child", str(tree), *argv],
        capture_output=True,
        text=True,
        env=env,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"benchmark side {tree} failed:\n{proc.stdout}\n{proc.stderr}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="main", help="git commit/branch of the BEFORE code (default main)")
    ap.add_argument("--repeats", type=int, default=20, help="decode repeats")
    ap.add_argument("--pipeline-repeats", type=int, default=3)
    ap.add_argument("--input-size", type=int, default=256)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--backbone", default="hrnet_w18_small")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads in each side")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--with-ops", action="store_true", help="each side uses its own tree's bupose-cuda-ops")
    ap.add_argument(
        "--rounds", type=int, default=3, help="BEFORE/AFTER runs, alternating (median over rounds)"
    )
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        _child(args.child, args)
        return
    import numpy as np
    argv = [
        f"--repeats={args.repeats}",
        f"--pipeline-repeats={args.pipeline_repeats}",
        f"--input-size={args.input_size}",
        f"--images={args.images}",
        f"--backbone={args.backbone}",
        f"--threads={args.threads}",
        *(["--skip-pipeline"] if args.skip_pipeline else []),
        *(["--with-ops"] if args.with_ops else []),
    ]
    with tempfile.TemporaryDirectory(prefix="bupose-bench-before-") as tmp:
        commit = _export(args.before, Path(tmp), args.with_ops)
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for r in range(args.rounds):  # alternate the order so that a load change hits both sides
            order = [("before", Path(tmp)), ("after", REPO)]
            for side, tree in order if r % 2 == 0 else order[::-1]:
                runs[side].append(_run_side(tree, argv))
    before, after = dict(runs["before"][0]), dict(runs["after"][0])
    for key in [k for k in before if k.endswith("_ms")]:
        before[key] = statistics.median(x[key] for x in runs["before"])
        after[key] = statistics.median(x[key] for x in runs["after"])
    print(f"BEFORE {args.before} ({commit[:10]}): {before['module']}")
    print(f"AFTER  this checkout: {after['module']}")
    print(f"deform_conv2d implementation: BEFORE {before['deform_conv2d']}, AFTER {after['deform_conv2d']}")
    same = (
        before["decode_poses"] == after["decode_poses"] and before["decode_scores"] == after["decode_scores"]
    )
    print(f"decode results identical: {same}")
    if "pipeline_poses" in before:
        b_p, a_p = np.asarray(before["pipeline_poses"]), np.asarray(after["pipeline_poses"])
        same_p = b_p.shape == a_p.shape and bool(np.array_equal(b_p, a_p))
        diff = f"largest difference {np.abs(b_p - a_p).max():.2e}" if b_p.shape == a_p.shape and b_p.size else "shapes differ"
        print(f"pipeline results identical (4 decimals): {same_p}" + ("" if same_p else f" ({diff})"))
    print(
        f"\n{'median (' + str(args.threads) + ' thread)':<52}{'BEFORE':>10}{'AFTER':>10}{'AFTER/BEFORE':>14}"
    )
    rows = [("decode, 30 people, flip, 512x832 [ms]", "decode_ms")]
    if not args.skip_pipeline:
        rows += [
            (f"pipeline {args.backbone}@{args.input_size}, bs 1 [ms/img]", "pipeline_bs1_ms"),
            (
                f"pipeline {args.backbone}@{args.input_size}, bs {args.images} [ms/img]",
                f"pipeline_bs{args.images}_ms",
            ),
        ]
    for label, key in rows:
        for kind, k in (("wall", key), ("CPU", key.replace("_ms", "_cpu_ms"))):
            b, a = before[k], after[k]
            print(f"{label + ' ' + kind:<52}{b:>10.2f}{a:>10.2f}{a / b:>14.3f}")


if __name__ == "__main__":
    main()
