"""kiln checkpoints and PyTorch: the same weights give the same outputs, in both directions.

Usage: pytorch_interop.py INTEROP_TOOL WORK_DIR   (run by tests/interop/pytorch_interop.sh)

1. kiln -> PyTorch: `interop_tool export` writes a kiln checkpoint of the small U-Net
   (UNet<1,2,16,4>, non-trivial BatchNorm running statistics) with an input and kiln's eval-mode
   output. The PyTorch U-Net of bench/compare_pytorch.py loads it with load_state_dict(strict=True)
   (every name, shape and dtype must match, num_batches_tracked as an int64 scalar) and must give
   the same output in eval mode.
2. PyTorch -> kiln: a PyTorch U-Net with its own weights and running statistics is written as
   safetensors (PyTorch's state_dict names, laid out as huggingface/safetensors does) with an
   input; `interop_tool run` loads it and its output must match PyTorch's.

The safetensors package is not needed: the format (8-byte length, JSON header, raw data) is read
and written here. Exit 77 (ctest: skipped) when PyTorch is not installed.
"""
import importlib.util
import json
import os
import struct
import subprocess
import sys

try:
    import torch
except ImportError:
    print("pytorch_interop: skipped: PyTorch is not installed (Debian: apt-get install python3-torch)")
    sys.exit(77)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WIDTH = 16  # kiln's `small` model
# Outputs are O(1); the two libraries sum convolutions in different orders (float32).
ATOL, RTOL = 1e-5, 1e-4

DTYPES = {"F32": (torch.float32, 4), "I64": (torch.int64, 8)}


def load_make_unet():
    spec = importlib.util.spec_from_file_location("compare_pytorch", os.path.join(REPO, "bench", "compare_pytorch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_unet


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    metadata = header.pop("__metadata__", {})
    data = blob[8 + n:]
    tensors = {}
    for name, entry in header.items():
        dtype, _ = DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        flat = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype)
        tensors[name] = flat.reshape(entry["shape"]).clone()
    return tensors, metadata


def write_safetensors(path, tensors, metadata):
    # As huggingface/safetensors: larger alignment first, then by name; header space-padded to 8.
    inverse = {v[0]: (k, v[1]) for k, v in DTYPES.items()}
    order = sorted(tensors, key=lambda name: (-inverse[tensors[name].dtype][1], name))
    header, chunks, offset = {"__metadata__": metadata}, [], 0
    for name in order:
        t = tensors[name].detach().contiguous().cpu()
        raw = t.numpy().tobytes()
        header[name] = {"dtype": inverse[t.dtype][0], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def check_close(what, got, want):
    if got.shape != want.shape:
        sys.exit(f"pytorch_interop: {what}: shape {list(got.shape)} vs {list(want.shape)}")
    diff = (got - want).abs()
    limit = ATOL + RTOL * want.abs()
    worst = diff.max().item()
    print(f"{what}: max |difference| {worst:.3g} over {want.numel()} values (|output| up to {want.abs().max().item():.3g})")
    if not bool((diff <= limit).all()):
        sys.exit(f"pytorch_interop: FAIL: {what}: outputs differ by up to {worst:.3g} (tolerance {ATOL} + {RTOL}*|y|)")


def kiln_to_pytorch(make_unet, tool, work):
    ckpt = os.path.join(work, "kiln.safetensors")
    subprocess.run([tool, "export", ckpt], check=True)
    tensors, metadata = read_safetensors(ckpt)
    if metadata.get("kiln.model") != f"UNet<1,2,{WIDTH},4>":
        sys.exit(f"pytorch_interop: FAIL: {ckpt}: kiln.model is {metadata.get('kiln.model')!r}")
    x, y_kiln = tensors.pop("interop.input"), tensors.pop("interop.output")
    model = make_unet(torch, WIDTH)
    # strict: a missing, extra or misnamed tensor, or a wrong shape, raises.
    model.load_state_dict(tensors, strict=True)
    for name, t in model.state_dict().items():
        if t.dtype != tensors[name].dtype:
            sys.exit(f"pytorch_interop: FAIL: '{name}' is {tensors[name].dtype} in the checkpoint, PyTorch keeps {t.dtype}")
    model.eval()
    with torch.no_grad():
        y_torch = model(x)
        y_train_mode = model.train()(x)
    model.eval()
    # The running statistics must matter, or this would not test that they were carried over.
    if (y_train_mode - y_torch).abs().max().item() < 1e-3:
        sys.exit("pytorch_interop: FAIL: eval and train mode agree: the running statistics are trivial")
    check_close("kiln checkpoint -> PyTorch, eval mode", y_torch, y_kiln)


def pytorch_to_kiln(make_unet, tool, work):
    torch.manual_seed(7)
    model = make_unet(torch, WIDTH)
    model.train()
    with torch.no_grad():
        for _ in range(4):  # running statistics of its own
            model(torch.rand(4, 1, 32, 32) * 2 - 1)
    model.eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        y_torch = model(x)
    tensors = dict(model.state_dict())
    tensors["interop.input"] = x
    ckpt, out = os.path.join(work, "pytorch.safetensors"), os.path.join(work, "kiln-output.safetensors")
    write_safetensors(ckpt, tensors, {"format": "pt"})
    subprocess.run([tool, "run", ckpt, out], check=True)
    outputs, _ = read_safetensors(out)
    check_close("PyTorch safetensors -> kiln, eval mode", outputs["interop.output"], y_torch)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tool, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    torch.set_num_threads(1)
    make_unet = load_make_unet()
    kiln_to_pytorch(make_unet, tool, work)
    pytorch_to_kiln(make_unet, tool, work)
    print(f"pytorch_interop: OK (PyTorch {torch.__version__})")


if __name__ == "__main__":
    main()
