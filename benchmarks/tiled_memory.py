"""Peak memory and time of full-size networks through the tiling engine (fp32 CPU), one process per case.

Each case runs in a fresh Python process so its peak RSS (ru_maxrss) is its own. Weights are the preset's
random initialisation: memory and time do not depend on the values.

    python benchmarks/tiled_memory.py --family HAN --family RCAN --size 256 --size 1024
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time
import torch
import archs
from sr.loading import LoadedModel
from sr.upscale import upscale_tensor

family, size, scale, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tile = None if tile == "auto" else int(tile)
fam = archs.get_family(family)
model = fam.build(**fam.presets[family], scale=scale).eval()
net = LoadedModel(model, family, scale, {}, fam.multiple_of, fam.supports_fp16, fam.supports_bf16, "random")
x = torch.rand(1, 3, size, size)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
out = upscale_tensor(net, x, tile=tile)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_rss_mib": peak / 1024, "before_mib": before / 1024,
                  "out": list(out.shape)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", action="append", help="family with a preset of its own name (HAN, RCAN)")
    parser.add_argument("--size", action="append", type=int, help="LR side in pixels")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile", default="auto", help="LR tile side, 0 for none, auto for the default")
    args = parser.parse_args()
    print("| family | LR input | tile | output | time (s) | peak RSS (MiB) | RSS before run (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for family in args.family or ["HAN", "RCAN"]:
        for size in args.size or [256, 1024]:
            run = subprocess.run(
                [sys.executable, "-c", CHILD, family, str(size), str(args.scale), args.tile],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(run.stdout.strip().splitlines()[-1])
            print(
                f"| {family} x{args.scale} | {size}x{size} | {args.tile} | {r['out'][2]}x{r['out'][3]} | "
                f"{r['seconds']:.1f} | {r['peak_rss_mib']:.0f} | {r['before_mib']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
