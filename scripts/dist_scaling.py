#!/usr/bin/env python3
"""The scaling model of docs/distributed.md, from a kiln-train checkpoint of the U-Net.

  python3 scripts/dist_scaling.py CHECKPOINT [--crop 256] [--batch 16] [--tflops 33] [--buckets 8]

Reads the checkpoint's parameter tensors (names and shapes; the optimizer's state and the running
statistics are not gradients), and prints:
  * the gradient bytes one all-reduce moves (fp32, and bf16),
  * the convolutions' multiply-adds per image at the crop (a weight tensor [out, in, k, k] does
    out*in*k*k per output pixel; its level's resolution follows from its state_dict name:
    down.i at 1/2^i, bottleneck at 1/2^depth, up.j at 1/2^(depth-1-j), up.j.reduce one level
    deeper, head at full size), and a training step's FLOPs = 3 passes (forward, input gradient,
    weight gradient) x 2 x multiply-adds,
  * per GPU count N: the step's compute time at the assumed throughput, the ring all-reduce time
    2(N-1)/N x bytes / bandwidth + 2(N-1) x latency x buckets on NVLink (one node, up to 8 GPUs)
    and on InfiniBand (one 400 Gb/s NIC per GPU), and the step time when the buckets overlap
    backward (forward + max(backward, all-reduce) + the last bucket's all-reduce), for a fixed
    per-GPU batch (weak scaling) and for a fixed global batch of 16 x 16 = 256 crops (strong).
Only the convolutions are counted: the real step is slower, which makes communication look
relatively cheaper than this model says; everything else is stated in the output.
"""
import argparse
import json
import re
import struct

NVLINK_GBPS = 400.0  # GB/s of all-reduce bus bandwidth per GPU (H100 NVLink 4: 450 GB/s each way)
NVLINK_LAT_US = 3.0
IB_GBPS = 50.0  # GB/s: one NDR 400 Gb/s NIC per GPU
IB_LAT_US = 8.0


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16, help="crops per GPU (weak scaling)")
    ap.add_argument("--global-batch", type=int, default=256, help="crops in all (strong scaling)")
    ap.add_argument("--tflops", type=float, default=33.0,
                    help="achieved convolution TFLOP/s per GPU (default: half of an H100's 67 fp32 peak)")
    ap.add_argument("--buckets", type=int, default=8, help="all-reduce calls per step")
    a = ap.parse_args()

    header = read_header(a.checkpoint)
    meta = header.pop("__metadata__", {})
    depth = int(meta.get("kiln.train.depth", 4))
    params, macs_per_pixel = 0, 0.0
    for name, t in header.items():
        if name.startswith("optimizer.") or "running_" in name or "num_batches" in name:
            continue
        shape = t["shape"]
        count = 1
        for s in shape:
            count *= s
        params += count
        if len(shape) != 4:
            continue
        if m := re.match(r"down\.(\d+)\.", name):
            level = int(m.group(1))
        elif name.startswith("bottleneck."):
            level = depth
        elif m := re.match(r"up\.(\d+)\.reduce\.", name):
            level = depth - int(m.group(1))
        elif m := re.match(r"up\.(\d+)\.", name):
            level = depth - 1 - int(m.group(1))
        elif name.startswith("head."):
            level = 0
        else:
            raise SystemExit(f"{a.checkpoint}: cannot place tensor '{name}' in the U-Net")
        macs_per_pixel += count / 4 ** level
    grad_bytes = 4 * params
    flops_image = 3 * 2 * macs_per_pixel * a.crop * a.crop
    print(f"{a.checkpoint}: {params:,} parameters -> {grad_bytes:,} bytes of fp32 gradients "
          f"({grad_bytes / 1e6:.2f} MB; bf16 {grad_bytes / 2e6:.2f} MB)")
    print(f"convolutions: {macs_per_pixel:,.0f} multiply-adds per input pixel; a training step "
          f"{flops_image / 1e9:.2f} GFLOP per {a.crop}x{a.crop} crop")
    print(f"assumed: {a.tflops:g} TFLOP/s per GPU, {a.buckets} buckets, NVLink {NVLINK_GBPS:g} GB/s + "
          f"{NVLINK_LAT_US:g} us per ring step, InfiniBand {IB_GBPS:g} GB/s + {IB_LAT_US:g} us")

    def allreduce_ms(n, nbytes, gbps, lat_us):
        if n == 1:
            return 0.0
        return (2 * (n - 1) / n * nbytes / (gbps * 1e9) + 2 * (n - 1) * lat_us * 1e-6 * a.buckets) * 1e3

    def step_ms(compute, comm):
        # forward, then backward with the buckets' all-reduces behind it, then the last bucket.
        return compute / 3 + max(2 * compute / 3, comm) + comm / a.buckets

    for title, per_gpu in (("fixed per-GPU batch %d (weak scaling)" % a.batch, lambda n: a.batch),
                           ("fixed global batch %d (strong scaling)" % a.global_batch,
                            lambda n: a.global_batch / n)):
        print(f"\n{title}, crop {a.crop}")
        print("| GPUs | crops per GPU | compute ms | all-reduce ms NVLink | efficiency | all-reduce ms IB | "
              "efficiency | IB, bf16 gradients |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in (1, 2, 4, 8, 16, 32, 64, 128, 256):
            b = per_gpu(n)
            if b < 1:
                break
            compute = b * flops_image / (a.tflops * 1e12) * 1e3
            nv = allreduce_ms(n, grad_bytes, NVLINK_GBPS, NVLINK_LAT_US) if n <= 8 else float("nan")
            ib = allreduce_ms(n, grad_bytes, IB_GBPS, IB_LAT_US)
            ib16 = allreduce_ms(n, grad_bytes / 2, IB_GBPS, IB_LAT_US)
            eff = lambda c: compute / step_ms(compute, c) if c == c else float("nan")
            nv_text = f"{nv:.2f} | {100 * eff(nv):.0f}%" if n <= 8 else "– | –"
            print(f"| {n} | {b:g} | {compute:.2f} | {nv_text} | {ib:.2f} | {100 * eff(ib):.0f}% | "
                  f"{100 * eff(ib16):.0f}% |")


if __name__ == "__main__":
    main()
