#!/usr/bin/python3
"""kiln's U-Net against the same U-Net in PyTorch: training step and inference.

The PyTorch model is exactly kiln's UNet<1, 2, Width, 4> (include/kiln/models/unet.hpp):
  ConvBlock(a, c) = Conv3x3(a->c) BN ReLU Conv3x3(c->c) BN ReLU      (every conv has a bias)
  down i:   ConvBlock, the pre-pool output is the skip, then MaxPool2d(2)
  bottleneck ConvBlock(c -> 2c)
  up j:     Upsample(x2, nearest) -> Conv1x1 (2c -> c) -> cat([up, skip]) -> ConvBlock(2c -> c)
  head      Conv1x1(Width -> 2)
with the same state_dict names (down.{i}.conv1.weight, bottleneck.*, up.{j}.reduce.*, head.*).

Training step = forward (train mode) + MSE + zero_grad + backward + Adam step; inference = forward
in eval mode under torch.inference_mode(). Each config: warm-up steps, then the median of N timed
steps, PyTorch and kiln (kiln_bench_step, --benchmark_format=json, its median_ms counter) run one
after the other per config so both see the same machine load.

PyTorch at its best on the CPU: torch.set_num_threads(<threads>) and glibc told not to mmap large
tensors (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_ large): otherwise every step maps and unmaps
its activations, which doubled PyTorch's step time on our 2-core machine. The script re-executes
itself with that environment if it was not set.

Usage: bench/compare_pytorch.sh [--device cpu|cuda] [--steps N] [--warmup N] [--configs N16_H64,N8_H128]
       [--models UNetSmall,UNetBase] [--build-dir DIR] [--json-out FILE] [--markdown-out FILE]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}
WIDTHS = {"UNetSmall": 16, "UNetBase": 32}
EXPECTED_PARAMS = {"UNetBase": 7_243_202}  # static_assert in unet.hpp


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2, help="PyTorch threads and OMP_NUM_THREADS for kiln (CPU)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per config (default 5 CPU, 20 GPU)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--configs", default="N16_H64,N8_H128", help="batch x size, e.g. N16_H64,N8_H128,N1_H256")
    p.add_argument("--models", default="UNetSmall,UNetBase")
    p.add_argument("--modes", default="train,infer")
    p.add_argument("--build-dir", default=None, help="kiln build with the bench targets (built if needed)")
    p.add_argument("--no-build", action="store_true", help="use the existing kiln binary as is")
    p.add_argument("--skip-kiln", action="store_true", help="PyTorch only")
    p.add_argument("--tf32", action="store_true", help="GPU: also run PyTorch with TF32 convolutions allowed")
    p.add_argument("--json-out", default=None)
    p.add_argument("--markdown-out", default=None)
    return p.parse_args()


def ensure_malloc_env():
    if all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()):
        return
    env = dict(os.environ)
    env.update(MALLOC_ENV)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def import_torch():
    try:
        import torch  # noqa: F401
        return torch
    except ImportError:
        pass
    if os.geteuid() == 0 and shutil.which("apt-get") and sys.executable.startswith("/usr/bin/"):
        print("compare_pytorch: installing python3-torch (Debian) ...", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "python3-torch"], check=True,
                       stdout=subprocess.DEVNULL)
        import torch  # noqa: F401
        return torch
    sys.exit("compare_pytorch: PyTorch is missing. Debian: apt-get install python3-torch and run with "
             "/usr/bin/python3; elsewhere: pip install torch")


def make_unet(torch, width, depth=4, in_ch=1, out_ch=2):
    nn = torch.nn

    class ConvBlock(nn.Module):
        def __init__(self, a, c):
            super().__init__()
            self.conv1 = nn.Conv2d(a, c, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1)
            self.bn2 = nn.BatchNorm2d(c)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(x)))

    class UpBlock(nn.Module):  # up.{j}: reduce + the ConvBlock's layers under the same prefix
        def __init__(self, c):
            super().__init__()
            self.reduce = nn.Conv2d(2 * c, c, 1)
            self.conv1 = nn.Conv2d(2 * c, c, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1)
            self.bn2 = nn.BatchNorm2d(c)

        def forward(self, x, skip):
            x = self.reduce(nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
            x = torch.cat([x, skip], dim=1)
            x = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(x)))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            chans = [width << i for i in range(depth)]
            self.down = nn.ModuleList([ConvBlock(in_ch if i == 0 else chans[i - 1], chans[i]) for i in range(depth)])
            self.bottleneck = ConvBlock(chans[-1], width << depth)
            self.up = nn.ModuleList([UpBlock(chans[depth - 1 - j]) for j in range(depth)])
            self.head = nn.Conv2d(width, out_ch, 1)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):
            skips = []
            for block in self.down:
                x = block(x)
                skips.append(x)
                x = self.pool(x)
            x = self.bottleneck(x)
            for j, block in enumerate(self.up):
                x = block(x, skips[-1 - j])
            return self.head(x)

    return UNet()


def parse_config(tag):
    n, h = tag.split("_")
    return int(n[1:]), int(h[1:])


def torch_times(torch, model_name, tag, mode, device, steps, warmup, tf32=False):
    n, h = parse_config(tag)
    torch.manual_seed(1)
    model = make_unet(torch, WIDTHS[model_name]).to(device)
    x = torch.randn(n, 1, h, h, device=device)
    target = torch.rand(n, 2, h, h, device=device) - 0.5
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    if mode == "train":
        model.train()

        def step():
            y = model(x)
            loss = torch.nn.functional.mse_loss(y, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync()
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                model(x)
            sync()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters())
    return statistics.median(times) * 1e3, min(times) * 1e3, params


def kiln_binary(args):
    build = args.build_dir or os.path.join(REPO, "build-bench" if args.device == "cpu" else "build-bench-gpu")
    target = "kiln_bench_step" if args.device == "cpu" else "kiln_bench_step_gpu"
    exe = os.path.join(build, "bench", target)
    if args.no_build:
        if not os.path.exists(exe):
            sys.exit(f"compare_pytorch: {exe} does not exist (drop --no-build to build it)")
        return exe
    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        cuda = "ON" if args.device == "cuda" else "OFF"
        cmd = ["cmake", "-S", REPO, "-B", build, "-DCMAKE_BUILD_TYPE=Release", f"-DKILN_CUDA={cuda}",
               "-DKILN_BUILD_EXAMPLES=OFF", "-DKILN_BUILD_TESTS=OFF", "-DKILN_BUILD_BENCH=ON"]
        print("compare_pytorch:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    cmd = ["cmake", "--build", build, "--target", target, "-j", str(os.cpu_count() or 2)]
    print("compare_pytorch:", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return exe


def kiln_times(exe, model_name, tag, mode, args, steps):
    dev = "cpu" if args.device == "cpu" else "cuda"
    name = f"{'train_step' if mode == 'train' else 'inference'}/{dev}/{model_name}/{tag}"
    env = dict(os.environ)
    env.update({"KILN_BENCH_STEPS": str(steps), "KILN_BENCH_WARMUP": str(args.warmup),
                "KILN_BENCH_STEP_CONFIGS": tag})
    env.pop("KILN_BENCH_SMOKE", None)
    if args.device == "cpu":
        env["OMP_NUM_THREADS"] = str(args.threads)
    out = subprocess.run([exe, f"--benchmark_filter=^{name}(/|$)", "--benchmark_format=json"], env=env, check=True,
                         stdout=subprocess.PIPE).stdout
    try:
        report = json.loads(out)
    except ValueError:
        sys.exit(f"compare_pytorch: {exe} printed no JSON for {name} (no such benchmark?)")
    rows = [b for b in report["benchmarks"] if b["name"].startswith(name)]
    if not rows or rows[0].get("error_occurred"):
        sys.exit(f"compare_pytorch: kiln benchmark {name} did not run: {rows[0].get('error_message') if rows else ''}")
    b = rows[0]
    return b["median_ms"], b["min_ms"], int(b["params"])


def machine():
    info = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        info["loadavg"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    return info


def main():
    args = parse_args()
    ensure_malloc_env()
    torch = import_torch()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("compare_pytorch: --device cuda but torch.cuda.is_available() is False")
    steps = args.steps or (5 if args.device == "cpu" else 20)
    torch.set_num_threads(args.threads)
    exe = None if args.skip_kiln else kiln_binary(args)
    configs = [c for c in args.configs.split(",") if c]
    models = [m for m in args.models.split(",") if m]
    modes = [m for m in args.modes.split(",") if m]
    info = machine()
    info.update({"torch": torch.__version__, "threads": args.threads, "device": args.device, "steps": steps,
                 "warmup": args.warmup})
    if args.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    print(f"# {info.get('cpu', '?')}, {info['cpus']} CPUs, load {info.get('loadavg')}, torch {info['torch']}, "
          f"{args.threads} threads, {args.device}, median of {steps} steps after {args.warmup} warm-up",
          file=sys.stderr)

    # Parameter counts: PyTorch's module against kiln's constexpr parameter_count.
    param_rows = []
    for m in models:
        torch_params = sum(p.numel() for p in make_unet(torch, WIDTHS[m]).parameters())
        param_rows.append({"model": m, "pytorch": torch_params})
        if m in EXPECTED_PARAMS and torch_params != EXPECTED_PARAMS[m]:
            sys.exit(f"compare_pytorch: the PyTorch {m} has {torch_params} parameters, expected {EXPECTED_PARAMS[m]}")

    rows = []
    for m in models:
        for tag in configs:
            for mode in modes:
                variants = [("fp32", False)] + ([("tf32", True)] if args.device == "cuda" and args.tf32 else [])
                k_med = k_min = k_params = None
                if exe:
                    k_med, k_min, k_params = kiln_times(exe, m, tag, mode, args, steps)
                for label, tf32 in variants:
                    t_med, t_min, t_params = torch_times(torch, m, tag, mode, args.device, steps, args.warmup, tf32)
                    row = {"model": m, "config": tag, "mode": mode, "math": label, "kiln_ms": k_med,
                           "kiln_min_ms": k_min, "pytorch_ms": t_med, "pytorch_min_ms": t_min,
                           "ratio": (k_med / t_med) if k_med else None, "kiln_params": k_params,
                           "pytorch_params": t_params}
                    rows.append(row)
                    ratio = f"{row['ratio']:.2f}" if row["ratio"] else "-"
                    kms = f"{k_med:.1f}" if k_med else "-"
                    print(f"{m:10s} {mode:5s} {tag:8s} {label}: kiln {kms} ms, PyTorch {t_med:.1f} ms, "
                          f"kiln/PyTorch {ratio}", file=sys.stderr)
                for pr in param_rows:
                    if pr["model"] == m and k_params:
                        pr["kiln"] = k_params

    lines = ["| model | config | mode | kiln ms | PyTorch ms | kiln / PyTorch |", "|---|---|---|---:|---:|---:|"]
    for r in rows:
        n, h = parse_config(r["config"])
        mode = ("train step" if r["mode"] == "train" else "inference") + (" (PyTorch TF32)" if r["math"] == "tf32" else "")
        kms = f"{r['kiln_ms']:.1f}" if r["kiln_ms"] else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        lines.append(f"| {r['model']} | {n} x {h}x{h} | {mode} | {kms} | {r['pytorch_ms']:.1f} | {ratio} |")
    lines += ["", "| model | PyTorch parameters | kiln parameter_count | equal |", "|---|---:|---:|---|"]
    ok = True
    for pr in param_rows:
        k = pr.get("kiln")
        same = (k == pr["pytorch"]) if k else None
        ok = ok and same is not False
        lines.append(f"| {pr['model']} | {pr['pytorch']:,} | {k:,} | {'yes' if same else 'NO'} |" if k else
                     f"| {pr['model']} | {pr['pytorch']:,} | - | - |")
    table = "\n".join(lines)
    print(table)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"machine": info, "rows": rows, "parameters": param_rows}, f, indent=1)
    if args.markdown_out:
        with open(args.markdown_out, "w") as f:
            f.write(table + "\n")
    if not ok:
        sys.exit("compare_pytorch: parameter counts differ between kiln and PyTorch")


if __name__ == "__main__":
    main()
