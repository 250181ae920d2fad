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
in eval mode under torch.inference_mode() (kiln: Network::infer, its eval plan). Each row runs in two
fresh processes, one per library, that run only that model, config and mode: warm-up steps, then the
median of N timed steps, PyTorch's right after kiln's (kiln_bench_step, --benchmark_format=json, its
median_ms counter) so both see the same machine load.

Memory: each of those processes reports its peak resident memory, VmHWM of /proc/self/status at the
end (the whole process: the library, the interpreter for PyTorch, the inputs, the model and
everything the steps allocated). Not getrusage's ru_maxrss, which Linux carries over exec from the
process that spawned the child (here, this script with PyTorch loaded). Besides --configs (train and
inference), --infer-configs adds inference-only rows: by default one 1024x640 image (N1_H640_W1024),
the size kiln-colorize works at.

Configs: N<batch>_H<height> (square) or N<batch>_H<height>_W<width>.

GPU math: every row runs both libraries in strict fp32; --tf32 adds rows with TF32 convolutions on
both sides (PyTorch: allow_tf32; kiln: kiln_bench_step_gpu's cuda_tf32 benchmarks, MathMode::tf32),
--bf16 rows with BF16 on both (PyTorch: torch.autocast("cuda", dtype=torch.bfloat16), automatic mixed
precision; kiln: cuda_bf16, MathMode::bf16, kiln-train's --precision bf16).

ISA: kiln picks its CPU code path at run time (the widest this CPU and program have). --isa NAME
sets KILN_CPU_ISA=NAME for kiln (the program must have that path: a -march=native build on an
AVX-512 machine has only avx512; a -march=x86-64-v3 build has avx2 and avx512) and checks that kiln
ran it (its JSON context, kiln_cpu_isa); PyTorch is held to the same instruction set
(ONEDNN_MAX_CPU_ISA for its oneDNN convolutions, ATEN_CPU_CAPABILITY for its own kernels) unless
--torch-isa-default. The header says what each side ran (oneDNN's own report, from a probe).

PyTorch at its best on the CPU: torch.set_num_threads(<threads>) and glibc told not to mmap large
tensors (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_ large): otherwise every step maps and unmaps
its activations, which doubled PyTorch's step time on our 2-core machine. The script re-executes
itself with that environment if it was not set (kiln's process gets the same environment). Those
settings keep freed memory in the heap, which raises PyTorch's peak resident memory a little;
--glibc-malloc runs both sides with glibc's defaults instead (PyTorch's lowest peak, not its best time).

Usage: bench/compare_pytorch.sh [--device cpu|cuda] [--tf32] [--bf16] [--steps N] [--warmup N] [--configs N16_H64,N8_H128]
       [--infer-configs N1_H640_W1024] [--models UNetSmall,UNetBase] [--isa avx2|avx512|portable]
       [--torch-isa-default] [--glibc-malloc] [--build-dir DIR] [--no-build] [--json-out FILE] [--markdown-out FILE]
"""
import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}
WIDTHS = {"UNetSmall": 16, "UNetBase": 32}
EXPECTED_PARAMS = {"UNetBase": 7_243_202}  # static_assert in unet.hpp
# --isa NAME: the environment that holds PyTorch to the same instruction set as kiln.
TORCH_ISA_ENV = {
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "DNNL_MAX_CPU_ISA": "AVX512_CORE", "ATEN_CPU_CAPABILITY": "avx512"},
    "portable": {"ONEDNN_MAX_CPU_ISA": "SSE41", "DNNL_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default"},
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2, help="PyTorch threads and OMP_NUM_THREADS for kiln (CPU)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per config (default 5 CPU, 20 GPU)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--configs", default="N16_H64,N8_H128",
                   help="train and inference rows: N<batch>_H<height>[_W<width>], e.g. N16_H64,N8_H128,N1_H256")
    p.add_argument("--infer-configs", default="N1_H640_W1024",
                   help="inference-only rows (default: one 1024x640 image); empty for none")
    p.add_argument("--models", default="UNetSmall,UNetBase")
    p.add_argument("--modes", default="train,infer")
    p.add_argument("--build-dir", default=None, help="kiln build with the bench targets (built if needed)")
    p.add_argument("--no-build", action="store_true", help="use the existing kiln binary as is")
    p.add_argument("--skip-kiln", action="store_true", help="PyTorch only")
    p.add_argument("--tf32", action="store_true", help="GPU: also run both with TF32 convolutions")
    p.add_argument("--bf16", action="store_true", help="GPU: also run both in BF16 (PyTorch: autocast, AMP)")
    p.add_argument("--isa", default=None, choices=sorted(TORCH_ISA_ENV),
                   help="CPU: kiln's code path (KILN_CPU_ISA), PyTorch held to the same instruction set")
    p.add_argument("--torch-isa-default", action="store_true", help="with --isa: leave PyTorch's ISA alone")
    p.add_argument("--glibc-malloc", action="store_true",
                   help="both sides with glibc's default malloc settings: PyTorch's peak memory is lower, its time "
                        "higher")
    p.add_argument("--torch-child", default=None, help=argparse.SUPPRESS)  # MODEL:TAG:MODE:MATH, one row
    p.add_argument("--json-out", default=None)
    p.add_argument("--markdown-out", default=None)
    return p.parse_args()


def ensure_malloc_env(glibc_defaults=False):
    """Re-executes this script with MALLOC_ENV set (or, glibc_defaults, unset) unless it already is."""
    if glibc_defaults:
        if not any(k in os.environ for k in MALLOC_ENV):
            return
        env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    else:
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
    """"N16_H64" -> (16, 64, 64); "N1_H640_W1024" -> (1, 640, 1024); exits with the reason otherwise."""
    m = re.fullmatch(r"N(\d+)_H(\d+)(?:_W(\d+))?", tag)
    if not m or min(int(g) for g in m.groups() if g is not None) <= 0:
        sys.exit(f"compare_pytorch: config '{tag}' is not N<batch>_H<height> or N<batch>_H<height>_W<width> "
                 "(sizes > 0), e.g. N16_H64 or N1_H640_W1024")
    n, h = int(m.group(1)), int(m.group(2))
    return n, h, int(m.group(3)) if m.group(3) else h


def config_tag(n, h, w):
    """kiln_bench_step's name for the config (no _W when square)."""
    return f"N{n}_H{h}" + (f"_W{w}" if w != h else "")


def peak_rss_mib():
    """This process's peak resident memory (VmHWM), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def torch_times(torch, model_name, tag, mode, device, steps, warmup, tf32=False, bf16=False):
    n, h, w = parse_config(tag)
    torch.manual_seed(1)
    model = make_unet(torch, WIDTHS[model_name]).to(device)
    x = torch.randn(n, 1, h, w, device=device)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def autocast():  # BF16 automatic mixed precision (fp32 weights, BF16 convolutions), or nothing
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    if mode == "train":
        model.train()
        target = torch.rand(n, 2, h, w, device=device) - 0.5
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            with autocast():
                y = model(x)
                loss = torch.nn.functional.mse_loss(y.float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync()
    else:
        model.eval()

        def step():
            with torch.inference_mode(), autocast():
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


def torch_child(args):
    """One row in this (fresh) process: times, parameters and the process's peak memory, as JSON on stdout."""
    torch = import_torch()
    torch.set_num_threads(args.threads)
    model_name, tag, mode, math = args.torch_child.split(":")
    steps = args.steps or (5 if args.device == "cpu" else 20)
    med, mn, params = torch_times(torch, model_name, tag, mode, args.device, steps, args.warmup, math == "tf32",
                                  math == "bf16")
    print(json.dumps({"median_ms": med, "min_ms": mn, "params": params, "peak_rss_MiB": peak_rss_mib()}))


def torch_env(args):
    env = dict(os.environ)
    if args.isa and not args.torch_isa_default:
        env.update(TORCH_ISA_ENV[args.isa])
    return env


def run_torch_row(args, model_name, tag, mode, math):
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-child", f"{model_name}:{tag}:{mode}:{math}",
           "--device", args.device, "--threads", str(args.threads), "--warmup", str(args.warmup)]
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    if args.glibc_malloc:
        cmd += ["--glibc-malloc"]
    proc = subprocess.run(cmd, env=torch_env(args), stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"compare_pytorch: the PyTorch process for {model_name} {tag} {mode} failed (exit "
                 f"{proc.returncode}); its message is above")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return r["median_ms"], r["min_ms"], r["params"], r["peak_rss_MiB"]


def torch_isa_report(args):
    """What PyTorch runs here with this environment: oneDNN's ISA (its verbose line) and ATen's capability."""
    code = ("import torch\n"
            "c = torch.nn.Conv2d(16, 16, 3, padding=1)\n"  # big enough for oneDNN (tiny ones take ATen's path)
            "with torch.no_grad(): c(torch.zeros(1, 16, 64, 64))\n"
            "cap = [l.split(':', 1)[1].strip() for l in torch.__config__.show().splitlines() if 'CPU capability' in l]\n"
            "print('aten:' + (cap[0] if cap else '?'))\n")
    env = torch_env(args)
    env["ONEDNN_VERBOSE"] = env["DNNL_VERBOSE"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True).stdout
    onednn = next((l.split("isa:", 1)[1].strip() for l in out.splitlines() if ",isa:" in l), "?")
    aten = next((l[5:] for l in out.splitlines() if l.startswith("aten:")), "?")
    return f"oneDNN {onednn}, ATen {aten}"


def kiln_binary(args):
    # --isa needs a program with run-time dispatch: its default build is for x86-64-v3 (AVX2 baseline, AVX-512
    # copies), as a -march=native build on an AVX-512 machine has the avx512 path only.
    default = "build-bench" if args.device == "cpu" else "build-bench-gpu"
    build = args.build_dir or os.path.join(REPO, "build-bench-x86-64-v3" if args.isa else default)
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
        if args.isa and not args.build_dir:
            cmd += ["-DKILN_NATIVE=OFF", "-DCMAKE_CXX_FLAGS=-march=x86-64-v3"]
        print("compare_pytorch:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    cmd = ["cmake", "--build", build, "--target", target, "-j", str(os.cpu_count() or 2)]
    print("compare_pytorch:", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return exe


def kiln_times(exe, model_name, tag, mode, args, steps, math="fp32"):
    """One row in a fresh kiln_bench_step process that runs only it: times, parameters, peak memory, context.
    math: on the GPU, fp32 (the cuda benchmarks), tf32 or bf16 (cuda_tf32, cuda_bf16)."""
    dev = "cpu" if args.device == "cpu" else ("cuda" if math == "fp32" else f"cuda_{math}")
    name = f"{'train_step' if mode == 'train' else 'inference'}/{dev}/{model_name}/{tag}"
    env = dict(os.environ)
    env.update({"KILN_BENCH_STEPS": str(steps), "KILN_BENCH_WARMUP": str(args.warmup),
                "KILN_BENCH_STEP_CONFIGS": tag})
    env.pop("KILN_BENCH_SMOKE", None)
    if args.device == "cpu":
        env["OMP_NUM_THREADS"] = str(args.threads)
        if args.isa:
            env["KILN_CPU_ISA"] = args.isa
    proc = subprocess.run([exe, f"--benchmark_filter=^{name}(/|$)", "--benchmark_format=json"], env=env,
                          stdout=subprocess.PIPE)
    if proc.returncode != 0:
        hint = (" (--isa needs a build with that path: -march=native on an AVX-512 machine has avx512 only; "
                "-DKILN_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v3 has avx2 and avx512, -DKILN_NATIVE=OFF alone "
                "portable too)") if args.isa else ""
        sys.exit(f"compare_pytorch: {exe} failed (exit {proc.returncode}) for {name}; its message is above{hint}")
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        sys.exit(f"compare_pytorch: {exe} printed no JSON for {name} (no such benchmark?)")
    rows = [b for b in report["benchmarks"] if b["name"].startswith(name)]
    if not rows or rows[0].get("error_occurred"):
        sys.exit(f"compare_pytorch: kiln benchmark {name} did not run: {rows[0].get('error_message') if rows else ''}")
    b = rows[0]
    if "peak_rss_MiB" not in b:
        sys.exit(f"compare_pytorch: {exe} reports no peak_rss_MiB: rebuild it (drop --no-build)")
    ctx = report.get("context", {})
    if args.isa and ctx.get("kiln_cpu_isa") != args.isa:
        sys.exit(f"compare_pytorch: --isa {args.isa} but {exe} ran {ctx.get('kiln_cpu_isa', 'an unnamed path')}")
    return {"median_ms": b["median_ms"], "min_ms": b["min_ms"], "params": int(b["params"]),
            "peak_rss_MiB": b["peak_rss_MiB"], "arena_MiB": b.get("arena_MiB"),
            "isa": ctx.get("kiln_cpu_isa"), "isa_baseline": ctx.get("kiln_cpu_isa_baseline"),
            "isas_available": ctx.get("kiln_cpu_isas_available")}


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


def fmt(v, spec=".1f"):
    return format(v, spec) if v is not None else "-"


def main():
    args = parse_args()
    ensure_malloc_env(args.glibc_malloc)
    if args.torch_child:
        return torch_child(args)
    if args.isa and args.device != "cpu":
        sys.exit("compare_pytorch: --isa is for --device cpu")
    torch = import_torch()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("compare_pytorch: --device cuda but torch.cuda.is_available() is False")
    steps = args.steps or (5 if args.device == "cpu" else 20)
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in WIDTHS:
            sys.exit(f"compare_pytorch: unknown model '{m}' (have {', '.join(WIDTHS)})")
    modes = [m for m in args.modes.split(",") if m]
    # (config tag, mode) pairs in table order: --configs in every mode, then the inference-only configs.
    plan = [(config_tag(*parse_config(c)), mode) for c in args.configs.split(",") if c for mode in modes]
    if "infer" in modes:
        plan += [(config_tag(*parse_config(c)), "infer") for c in args.infer_configs.split(",") if c]
    exe = None if args.skip_kiln else kiln_binary(args)
    info = machine()
    info.update({"torch": torch.__version__, "threads": args.threads, "device": args.device, "steps": steps,
                 "warmup": args.warmup, "isa_requested": args.isa,
                 "peak_memory": "VmHWM of each row's own process (whole process)"})
    if args.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    else:
        info["torch_isa"] = torch_isa_report(args)
        if args.isa and not args.torch_isa_default:
            info["torch_isa_env"] = TORCH_ISA_ENV[args.isa]
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
    kiln_isas = set()
    for m in models:
        for tag, mode in plan:
            variants = ["fp32"] + [v for v, on in (("tf32", args.tf32), ("bf16", args.bf16))
                                   if on and args.device == "cuda"]
            for label in variants:
                k = {}
                try:
                    if exe:  # kiln in the same math as PyTorch's row
                        k = kiln_times(exe, m, tag, mode, args, steps, label)
                        kiln_isas.add((k["isa"], k["isa_baseline"], k["isas_available"]))
                    t_med, t_min, t_params, t_peak = run_torch_row(args, m, tag, mode, label)
                except SystemExit as e:  # a TF32 / BF16 row that fails costs that row, not the fp32 ones
                    if label == "fp32":
                        raise
                    print(f"compare_pytorch: {m} {tag} {mode} {label} left out: {e}", file=sys.stderr)
                    continue
                k_med, k_peak = k.get("median_ms"), k.get("peak_rss_MiB")
                row = {"model": m, "config": tag, "mode": mode, "math": label, "kiln_ms": k_med,
                       "kiln_min_ms": k.get("min_ms"), "pytorch_ms": t_med, "pytorch_min_ms": t_min,
                       "ratio": (k_med / t_med) if k_med else None, "kiln_params": k.get("params"),
                       "pytorch_params": t_params, "kiln_peak_MiB": k_peak, "pytorch_peak_MiB": t_peak,
                       "peak_ratio": (k_peak / t_peak) if k_peak and t_peak else None,
                       "kiln_arena_MiB": k.get("arena_MiB"), "kiln_isa": k.get("isa")}
                rows.append(row)
                print(f"{m:10s} {mode:5s} {tag:14s} {label}: kiln {fmt(k_med)} ms {fmt(k_peak, '.0f')} MiB, "
                      f"PyTorch {t_med:.1f} ms {fmt(t_peak, '.0f')} MiB, kiln/PyTorch {fmt(row['ratio'], '.2f')} "
                      f"time, {fmt(row['peak_ratio'], '.2f')} memory", file=sys.stderr)
            for pr in param_rows:
                if pr["model"] == m and k.get("params"):
                    pr["kiln"] = k["params"]

    try:
        info["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    info["date_end"] = time.strftime("%Y-%m-%d %H:%M %Z")
    isa_words = ", ".join(sorted(i[0] or "?" for i in kiln_isas)) if kiln_isas else "-"
    lines = [f"{info['date']} to {info['date_end']}: {info.get('cpu', '?')}, {info['cpus']} CPUs, load average "
             f"{' '.join(info.get('loadavg', []))} at the start, {' '.join(info.get('loadavg_end', []))} at the end; "
             f"{args.threads} threads, median of {steps} steps after {args.warmup} warm-up; peak memory = VmHWM of "
             "each row's own process" + ("; glibc's default malloc settings." if args.glibc_malloc else
                                        f"; {' '.join(f'{k}={v}' for k, v in MALLOC_ENV.items())}."), ""]
    if args.device == "cpu":
        forced = f"KILN_CPU_ISA={args.isa}" if args.isa else "KILN_CPU_ISA unset: the widest path it has"
        k_desc = "; ".join(f"ran {i[0]} (program baseline {i[1]}, paths {i[2]})" for i in sorted(kiln_isas, key=str))
        lines.append(f"kiln: {forced}, {k_desc or '-'}. PyTorch {info['torch']}: {info['torch_isa']}"
                     + (" (" + ", ".join(f"{a}={b}" for a, b in info["torch_isa_env"].items()) + ")"
                        if "torch_isa_env" in info else "") + ".")
        lines.append("")
    lines += [f"| model | config (N x H x W) | mode | kiln ms ({isa_words}) | PyTorch ms | kiln / PyTorch "
              "| kiln peak MiB | PyTorch peak MiB | kiln / PyTorch memory |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        n, h, w = parse_config(r["config"])
        mode = ("train step" if r["mode"] == "train" else "inference") + {"tf32": " (both TF32)",
                                                                           "bf16": " (both BF16: kiln bf16, PyTorch AMP)"}.get(
                                                                               r["math"], "")
        lines.append(f"| {r['model']} | {n} x {h}x{w} | {mode} | {fmt(r['kiln_ms'])} | {r['pytorch_ms']:.1f} | "
                     f"{fmt(r['ratio'], '.2f')} | {fmt(r['kiln_peak_MiB'], '.0f')} | {fmt(r['pytorch_peak_MiB'], '.0f')} | "
                     f"{fmt(r['peak_ratio'], '.2f')} |")
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
