#!/usr/bin/env python3
"""kiln's layering rules, checked on the #include lines of the library and the kernels.

Each header belongs to the layer its folder names; a layer may include only the layers listed
for it below (and the standard library, third-party headers, itself). docs/architecture.md draws
the same table. Exit 1 and one line per forbidden arrow ("file:line: layer -> layer (header)").

  python3 scripts/check_layers.py [ROOT]          # ROOT: the repository (default: this script's parent)
  python3 scripts/check_layers.py --self-test     # proves the checker fires on a forbidden arrow
"""
import pathlib
import re
import sys
import tempfile

# layer -> the layers it may include. The arrows that must never exist are the ones missing here,
# e.g. kernels -> cpu or io, core -> nn (layers), io -> nn, ops -> anything but ops, and anything of
# the library -> color (any of its folders): kiln/color/ is the colorizer's module on top of the
# library, never under it; no LIBRARY entry names a color layer.
LIBRARY = {
    "ops": {"ops"},
    "core": {"core", "ops"},
    "gpu": {"gpu", "core", "ops"},
    "kernels": {"kernels", "gpu", "core", "ops"},
    "cpu": {"cpu", "core", "ops"},
    "cuda": {"cuda", "kernels", "gpu", "core", "ops"},
    "nn": {"nn", "core", "ops"},
    "optim": {"optim", "core", "ops"},
    "io": {"io", "core", "ops"},
    "models": {"models", "nn", "core", "ops"},
    "train": {"train", "io", "core", "ops"},
    "dist": {"dist", "nn", "core", "ops", "cuda", "gpu"},  # nn: the replica hooks, StateRef
}
COLOR = {"color", "color_ops", "color_cpu", "color_kernels"}
ALLOWED = dict(LIBRARY)
# kiln.hpp, cuda.hpp: the umbrella headers include the whole library (not color).
ALLOWED["top"] = set(LIBRARY) | {"top"}
# The colorizer's module: its device table ColourOps<D> is built like the library's, in the same
# folders under kiln/color/: ops/ (argument structs, shared scalar maths), cpu/ (CPU loops),
# kernels/ (CUDA kernels). Those keep the library's rules for their kind; the rest of the module
# (layers, ColourOps tables, loaders, metrics) may use the whole library except dist.
ALLOWED["color_ops"] = {"color_ops", "ops"}
ALLOWED["color_cpu"] = {"color_cpu", "color_ops", "cpu", "core", "ops"}
ALLOWED["color_kernels"] = {"color_kernels", "color_ops", "kernels", "gpu", "core", "ops"}
ALLOWED["color"] = COLOR | {"train", "io", "models", "nn", "optim", "cuda", "core", "ops"}
COLOR_FOLDERS = {"ops": "color_ops", "cpu": "color_cpu", "kernels": "color_kernels"}

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')


def layer_of_file(root, path):
    rel = path.relative_to(root).as_posix()
    if rel.startswith("kernels/kiln/gpu/"):
        return "gpu"
    if rel.startswith("kernels/"):
        return "kernels"
    parts = rel.split("/")
    if rel.startswith("include/kiln/color/") and len(parts) > 4:
        return COLOR_FOLDERS.get(parts[3], "color")
    if rel.startswith("include/kiln/"):
        return parts[2] if len(parts) > 3 else "top"
    return None


def layer_of_include(name):
    if name.startswith("kiln/gpu/"):
        return "gpu"
    m = re.match(r"kiln/color/([a-z_]+)/", name)
    if m:
        return COLOR_FOLDERS.get(m.group(1), "color")
    m = re.match(r"kiln/([a-z_]+)/", name)
    if m:
        return m.group(1)
    if name.startswith("kiln/"):
        return "top"
    if name.endswith(".cuh") and "/" not in name:
        return "kernels"
    return None  # standard or third-party


def check(root):
    problems = []
    files = sorted(root.glob("include/kiln/**/*.hpp")) + sorted(root.glob("include/kiln/**/*.inl")) + \
        sorted(root.glob("include/kiln/**/*.cuh")) + sorted(root.glob("kernels/**/*.cuh")) + \
        sorted(root.glob("kernels/**/*.hpp"))
    for path in files:
        layer = layer_of_file(root, path)
        if layer is None:
            continue
        allowed = ALLOWED.get(layer, set())
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            target = layer_of_include(m.group(1))
            if target is None or target in allowed:
                continue
            rel = path.relative_to(root).as_posix()
            problems.append(f"{rel}:{number}: {layer} -> {target} ({m.group(1)}): "
                            f"{layer} may include only {', '.join(sorted(allowed))}")
    return problems, len(files)


def self_test():
    with tempfile.TemporaryDirectory() as d:
        root = pathlib.Path(d)
        for folder in ("include/kiln/io", "include/kiln/nn", "include/kiln/cuda", "include/kiln/color/kernels",
                       "include/kiln/color/cpu", "kernels"):
            (root / folder).mkdir(parents=True)
        (root / "include/kiln/io/good.hpp").write_text('#include "kiln/core/tensor.hpp"\n#include <vector>\n')
        (root / "include/kiln/io/bad.hpp").write_text('#include <kiln/nn/network.hpp>\n')
        (root / "kernels/bad.cuh").write_text('#pragma once\n#include "kiln/cpu/pooling.hpp"\n')
        (root / "include/kiln/nn/bad.hpp").write_text('#pragma once\n\n#include "kiln/color/lab_tensor.hpp"\n')
        (root / "include/kiln/kiln.hpp").write_text('#include "kiln/nn/conv2d.hpp"\n#include <kiln/color/metrics.hpp>\n')
        (root / "include/kiln/color/good.hpp").write_text('#include "kiln/nn/sequential.hpp"\n#include "kiln/io/image.hpp"\n')
        # the colour module's device table: the library may reach none of it, its kernels no cpu/
        (root / "include/kiln/cuda/bad.hpp").write_text('#include "kiln/color/cuda.hpp"\n')
        (root / "kernels/bad_colour.cuh").write_text('#include "kiln/color/kernels/color.cuh"\n')
        (root / "include/kiln/color/cuda.hpp").write_text(
            '#include "kiln/cuda/launch.hpp"\n#include "kiln/color/kernels/color.cuh"\n#include "kiln/color/cpu/x.hpp"\n')
        (root / "include/kiln/color/kernels/bad.cuh").write_text(
            '#include "block_reduce.cuh"\n#include "kiln/color/ops/x.hpp"\n#include "kiln/cpu/loss.hpp"\n')
        (root / "include/kiln/color/cpu/good.hpp").write_text('#include "kiln/cpu/softmax_xent.hpp"\n')
        problems, _ = check(root)
        want = {"include/kiln/io/bad.hpp:1: io -> nn", "kernels/bad.cuh:2: kernels -> cpu",
                "include/kiln/nn/bad.hpp:3: nn -> color", "include/kiln/kiln.hpp:2: top -> color",
                "include/kiln/cuda/bad.hpp:1: cuda -> color", "kernels/bad_colour.cuh:1: kernels -> color_kernels",
                "include/kiln/color/kernels/bad.cuh:3: color_kernels -> cpu"}
        got = {p.split(" (")[0] for p in problems}
        if got != want:
            print(f"check_layers self-test FAILED: expected {sorted(want)}, got {sorted(got)}")
            return 1
    print(f"check_layers self-test: all {len(want)} forbidden arrows caught, the allowed ones passed")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    root = pathlib.Path(argv[1] if len(argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
    problems, n = check(root)
    for p in problems:
        print(p)
    if problems:
        print(f"check_layers: {len(problems)} forbidden include(s) in {n} headers (rules: docs/architecture.md)")
        return 1
    print(f"check_layers: {n} headers, every include follows the layering rules")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
