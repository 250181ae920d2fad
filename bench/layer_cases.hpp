#pragma once
// The per-layer benchmarks, written once over the device: every operation is
// called through Backend<Device> (the same table the layers call), so
// kiln_bench_cpu instantiates this with Cpu and kiln_bench_gpu with Cuda.
//
// What a device must provide (Timing<Device>, see bench_cpu.cpp / bench_gpu.cu):
//   static void configure(benchmark::internal::Benchmark*, double work_hint);
//       time base (real time on the CPU, GPU event time on the GPU), unit,
//       iteration policy; work_hint = FLOPs or bytes of one call, so heavy
//       shapes run fewer iterations instead of being skipped
//   template <class F> static void loop(benchmark::State&, F&& op);
//       one untimed warm-up call, then the timed loop
//   static void sync();
//
// Counters: GFLOP (per second) and peak_frac for convolutions, GB (per second,
// compulsory bytes: every tensor read once + written once) and peak_frac for
// the memory-bound layers. peak_frac divides by the Peaks handed in.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench_common.hpp"
#include "kiln/core/backend.hpp"
#include "kiln/core/conv_shape.hpp"
#include "kiln/cpu/batchnorm.hpp"
#include "kiln/cpu/loss.hpp"
#include "kiln/cpu/optim.hpp"
#include "kiln/cpu/pooling.hpp"
#include "kiln/cpu/upsample.hpp"
#include "kiln/models/unet.hpp"
#include "kiln/nn/batchnorm2d.hpp"
#include "kiln/optim/adam.hpp"

namespace kiln::bench {

template <class Device>
struct Timing;

struct Peaks {
  double flops = 0;        // FLOP/s the convolutions are compared with
  double bytes_per_s = 0;  // bytes/s the memory-bound layers are compared with
};

// Inputs of the benchmark being run, kept across Google Benchmark's repeated
// calls of the same benchmark (it calls the function again with more
// iterations), freed when the next benchmark starts: the 256x256 shapes need
// hundreds of MiB and random filling costs more than the operation.
template <class Device>
class CaseTensors {
 public:
  static CaseTensors& for_case(const std::string& name) {
    static CaseTensors instance;
    if (instance.name_ != name) {
      instance.tensors_.clear();
      instance.ints_.clear();
      instance.name_ = name;
    }
    return instance;
  }
  // Uniform in [lo, hi) (seeded by the key's position), or zeros if lo == hi.
  Tensor<float, Device>& get(const std::string& key, const Shape& shape, float lo = -1.0f, float hi = 1.0f) {
    auto it = tensors_.find(key);
    if (it == tensors_.end()) {
      Tensor<float, Device> t(shape);  // zero-filled
      if (lo != hi)
        t.copy_from_host(std::span<const float>(random_values(shape.numel(), tensors_.size(), lo, hi), shape.numel()));
      it = tensors_.emplace(key, std::move(t)).first;
    }
    return it->second;
  }
  Tensor<std::int32_t, Device>& get_int(const std::string& key, const Shape& shape) {
    auto it = ints_.find(key);
    if (it == ints_.end()) it = ints_.emplace(key, Tensor<std::int32_t, Device>(shape)).first;
    return it->second;
  }

 private:
  std::string name_;
  std::map<std::string, Tensor<float, Device>> tensors_;
  std::map<std::string, Tensor<std::int32_t, Device>> ints_;
};

// Registers one benchmark: name, work per call (FLOPs if flops, else bytes), body.
template <class Device>
void add_case(const std::string& name, double work, bool is_flops, const Peaks& peaks,
              std::function<void(benchmark::State&, CaseTensors<Device>&)> body) {
  auto* b = benchmark::RegisterBenchmark(name.c_str(), [name, work, is_flops, peaks, body](benchmark::State& state) {
    auto& tensors = CaseTensors<Device>::for_case(name);
    body(state, tensors);
    if (is_flops)
      set_flops(state, work, peaks.flops);
    else
      set_bytes(state, work, peaks.bytes_per_s);
    // Our kernel's time over the reference's (cuDNN, strict fp32) for the same op and shape.
    const auto ref = reference_seconds().find(op_shape_key(name));
    if (ref != reference_seconds().end() && state.iterations() > 0 && last_loop_seconds() > 0) {
      const double ours = last_loop_seconds() / static_cast<double>(state.iterations());
      state.counters["cudnn_us"] = ref->second * 1e6;
      state.counters["x_cudnn"] = ours / ref->second;
    }
  });
  Timing<Device>::configure(b, work);
}

// Conv2d<Cin, Cout, K> at [n, cin, h, h]: forward, input gradient, weight (+bias) gradient.
template <class Device>
void add_conv_cases(const std::string& tag, const std::string& dev, std::int64_t n, std::int64_t cin, std::int64_t cout,
                    std::int64_t k, std::int64_t h, const Peaks& peaks) {
  using B = Backend<Device>;
  using T = Tensor<float, Device>;
  const ConvShape s{n, cin, cout, h, h, k};
  const std::string kname = "conv" + std::to_string(k) + "x" + std::to_string(k);
  const std::string shape = shape_tag(cin, h, n);
  const double flops = conv_flops(n, cin, cout, k, h, h);
  const Shape xs = Shape::nchw(n, cin, h, h), ys = Shape::nchw(n, cout, h, h), ws{cout, cin, k, k}, bs{cout};
  const Shape work{static_cast<std::int64_t>(B::conv2d_workspace_floats(s)) + 1};
  const std::string label = std::to_string(cin) + "->" + std::to_string(cout) + " " + tag;

  add_case<Device>(kname + "_fwd/" + dev + "/" + shape, flops, true, peaks, [=](benchmark::State& st, auto& c) {
    T &x = c.get("x", xs), &w = c.get("w", ws, -0.1f, 0.1f), &b = c.get("b", bs), &y = c.get("y", ys, 0, 0);
    T& wsp = c.get("ws", work, 0, 0);
    Timing<Device>::loop(st, [&] { B::conv2d_forward(s, x, w, b, y, wsp); });
    st.SetLabel(label);
  });
  add_case<Device>(kname + "_dgrad/" + dev + "/" + shape, flops, true, peaks, [=](benchmark::State& st, auto& c) {
    T &x = c.get("x", xs), &w = c.get("w", ws, -0.1f, 0.1f), &dy = c.get("dy", ys), &dx = c.get("dx", xs, 0, 0);
    T& wsp = c.get("ws", work, 0, 0);
    T no_dw, no_db;
    Timing<Device>::loop(st, [&] { B::conv2d_backward(s, x, w, dy, dx, no_dw, no_db, wsp); });
    st.SetLabel(label + " (dx only)");
  });
  add_case<Device>(kname + "_wgrad/" + dev + "/" + shape, flops, true, peaks, [=](benchmark::State& st, auto& c) {
    T &x = c.get("x", xs), &w = c.get("w", ws, -0.1f, 0.1f), &dy = c.get("dy", ys);
    T &dw = c.get("dw", ws, 0, 0), &db = c.get("db", bs, 0, 0), &wsp = c.get("ws", work, 0, 0);
    T no_dx;
    Timing<Device>::loop(st, [&] { B::conv2d_backward(s, x, w, dy, no_dx, dw, db, wsp); });
    st.SetLabel(label + " (dw += , db +=)");
  });
}

template <class Device>
void add_batchnorm_cases(const std::string& tag, const std::string& dev, std::int64_t n, std::int64_t c, std::int64_t h,
                         const Peaks& peaks) {
  using B = Backend<Device>;
  using T = Tensor<float, Device>;
  const Shape xs = Shape::nchw(n, c, h, h), cs{c};
  const double bytes = 4.0 * static_cast<double>(xs.numel());
  const std::string shape = shape_tag(c, h, n);
  BatchNormArgs args;
  args.n = n;
  args.c = c;
  args.hw = h * h;
  auto params = [=](CaseTensors<Device>& t) {
    struct P {
      T &x, &w, &b, &rm, &rv, &sm, &si, &y;
    };
    return P{t.get("x", xs),
             t.get("w", cs, 0.5f, 1.5f),
             t.get("b", cs),
             t.get("rm", cs, -0.1f, 0.1f),
             t.get("rv", cs, 0.5f, 1.5f),
             t.get("sm", cs, 0, 0),
             t.get("si", cs, 0, 0),
             t.get("y", xs, 0, 0)};
  };
  add_case<Device>("batchnorm_fwd_train/" + dev + "/" + shape, 2 * bytes, false, peaks, [=](auto& st, auto& t) {
    auto p = params(t);
    BatchNormArgs a = args;
    a.training = true;
    Timing<Device>::loop(st, [&] { B::batchnorm_forward(a, p.x, p.w, p.b, p.rm, p.rv, p.sm, p.si, p.y); });
    st.SetLabel(tag);
  });
  add_case<Device>("batchnorm_bwd/" + dev + "/" + shape, 3 * bytes, false, peaks, [=](auto& st, auto& t) {
    auto p = params(t);
    BatchNormArgs a = args;
    a.training = true;
    B::batchnorm_forward(a, p.x, p.w, p.b, p.rm, p.rv, p.sm, p.si, p.y);  // the saved batch statistics
    T &dy = t.get("dy", xs), &dx = t.get("dx", xs, 0, 0), &dw = t.get("dw", cs, 0, 0), &db = t.get("db", cs, 0, 0);
    Timing<Device>::loop(st, [&] { B::batchnorm_backward(a, p.x, p.w, p.sm, p.si, dy, dx, dw, db); });
    st.SetLabel(tag + " (after a train forward)");
  });
  add_case<Device>("batchnorm_fwd_eval/" + dev + "/" + shape, 2 * bytes, false, peaks, [=](auto& st, auto& t) {
    auto p = params(t);
    BatchNormArgs a = args;
    a.training = false;
    Timing<Device>::loop(st, [&] { B::batchnorm_forward(a, p.x, p.w, p.b, p.rm, p.rv, p.sm, p.si, p.y); });
    st.SetLabel(tag);
  });
  // BatchNorm + ReLU in one pass each way (what the U-Net runs where the backend has it):
  // forward reads x, writes y; backward reads x, y (the mask) and dy, writes dx.
  if constexpr (kiln::HasFusedBatchNormReLU<Device>) {
    add_case<Device>("batchnorm_relu_fwd_train/" + dev + "/" + shape, 2 * bytes, false, peaks, [=](auto& st, auto& t) {
      auto p = params(t);
      BatchNormArgs a = args;
      a.training = true;
      Timing<Device>::loop(st, [&] { B::batchnorm_relu_forward(a, p.x, p.w, p.b, p.rm, p.rv, p.sm, p.si, p.y); });
      st.SetLabel(tag);
    });
    add_case<Device>("batchnorm_relu_bwd/" + dev + "/" + shape, 4 * bytes, false, peaks, [=](auto& st, auto& t) {
      auto p = params(t);
      BatchNormArgs a = args;
      a.training = true;
      B::batchnorm_relu_forward(a, p.x, p.w, p.b, p.rm, p.rv, p.sm, p.si, p.y);
      T &dy = t.get("dy", xs), &dx = t.get("dx", xs, 0, 0), &dw = t.get("dw", cs, 0, 0), &db = t.get("db", cs, 0, 0);
      Timing<Device>::loop(st, [&] { B::batchnorm_relu_backward(a, p.x, p.w, p.sm, p.si, p.y, dy, dx, dw, db); });
      st.SetLabel(tag + " (after a train forward)");
    });
  }
}

template <class Device>
void add_relu_cases(const std::string& tag, const std::string& dev, std::int64_t n, std::int64_t c, std::int64_t h,
                    const Peaks& peaks) {
  using B = Backend<Device>;
  using T = Tensor<float, Device>;
  const Shape xs = Shape::nchw(n, c, h, h);
  const double bytes = 4.0 * static_cast<double>(xs.numel());
  const std::string shape = shape_tag(c, h, n);
  add_case<Device>("relu_fwd/" + dev + "/" + shape, 2 * bytes, false, peaks, [=](auto& st, auto& t) {
    T &x = t.get("x", xs), &y = t.get("y", xs, 0, 0);
    Timing<Device>::loop(st, [&] { B::relu_forward(x, y); });
    st.SetLabel(tag);
  });
  add_case<Device>("relu_bwd/" + dev + "/" + shape, 3 * bytes, false, peaks, [=](auto& st, auto& t) {
    T &y = t.get("y", xs), &dy = t.get("dy", xs), &dx = t.get("dx", xs, 0, 0);
    Timing<Device>::loop(st, [&] { B::relu_backward(y, dy, dx); });
    st.SetLabel(tag);
  });
}

template <class Device>
void add_maxpool_cases(const std::string& tag, const std::string& dev, std::int64_t n, std::int64_t c, std::int64_t h,
                       const Peaks& peaks) {
  using B = Backend<Device>;
  using T = Tensor<float, Device>;
  const Shape xs = Shape::nchw(n, c, h, h), ys = Shape::nchw(n, c, h / 2, h / 2);
  const double in = 4.0 * static_cast<double>(xs.numel()), out = 4.0 * static_cast<double>(ys.numel());
  const PoolArgs a{n, c, h, h, 2};
  const std::string shape = shape_tag(c, h, n);
  // forward: read x, write y and the int32 arg-max; backward: read dy and arg-max, write dx.
  add_case<Device>("maxpool_fwd/" + dev + "/" + shape, in + 2 * out, false, peaks, [=](auto& st, auto& t) {
    T &x = t.get("x", xs), &y = t.get("y", ys, 0, 0);
    auto& arg = t.get_int("arg", ys);
    Timing<Device>::loop(st, [&] { B::maxpool2d_forward(a, x, y, arg); });
    st.SetLabel(tag);
  });
  add_case<Device>("maxpool_bwd/" + dev + "/" + shape, in + 2 * out, false, peaks, [=](auto& st, auto& t) {
    T &x = t.get("x", xs), &y = t.get("y", ys, 0, 0), &dy = t.get("dy", ys), &dx = t.get("dx", xs, 0, 0);
    auto& arg = t.get_int("arg", ys);
    B::maxpool2d_forward(a, x, y, arg);
    Timing<Device>::loop(st, [&] { B::maxpool2d_backward(a, arg, dy, dx); });
    st.SetLabel(tag);
  });
}

template <class Device>
void add_upsample_cases(const std::string& tag, const std::string& dev, std::int64_t n, std::int64_t c, std::int64_t h,
                        const Peaks& peaks) {
  using B = Backend<Device>;
  using T = Tensor<float, Device>;
  const Shape xs = Shape::nchw(n, c, h, h), ys = Shape::nchw(n, c, 2 * h, 2 * h);
  const double bytes = 4.0 * static_cast<double>(xs.numel() + ys.numel());
  const UpsampleArgs a{n, c, h, h, 2};
  const std::string shape = shape_tag(c, h, n);
  add_case<Device>("upsample_fwd/" + dev + "/" + shape, bytes, false, peaks, [=](auto& st, auto& t) {
    T &x = t.get("x", xs), &y = t.get("y", ys, 0, 0);
    Timing<Device>::loop(st, [&] { B::upsample_nearest_forward(a, x, y); });
    st.SetLabel(tag + " nearest x2");
  });
  add_case<Device>("upsample_bwd/" + dev + "/" + shape, bytes, false, peaks, [=](auto& st, auto& t) {
    T &dy = t.get("dy", ys), &dx = t.get("dx", xs, 0, 0);
    Timing<Device>::loop(st, [&] { B::upsample_nearest_backward(a, dy, dx); });
    st.SetLabel(tag + " nearest x2");
  });
}

template <class Device>
void add_concat_cases(const std::string& tag, const std::string& dev, std::int64_t n, std::int64_t c, std::int64_t h,
                      const Peaks& peaks) {
  using B = Backend<Device>;
  using T = Tensor<float, Device>;
  const Shape as = Shape::nchw(n, c, h, h), ys = Shape::nchw(n, 2 * c, h, h);
  const double bytes = 2 * 4.0 * static_cast<double>(ys.numel());
  const std::string shape = shape_tag(c, h, n);
  add_case<Device>("concat_fwd/" + dev + "/" + shape, bytes, false, peaks, [=](auto& st, auto& t) {
    T &a = t.get("a", as), &b = t.get("b", as), &y = t.get("y", ys, 0, 0);
    Timing<Device>::loop(st, [&] { B::concat_channels(a, b, y); });
    st.SetLabel(tag);
  });
  add_case<Device>("concat_bwd/" + dev + "/" + shape, bytes, false, peaks, [=](auto& st, auto& t) {
    T &dy = t.get("dy", ys), &da = t.get("da", as, 0, 0), &db = t.get("db", as, 0, 0);
    Timing<Device>::loop(st, [&] { B::split_channels(dy, da, db); });
    st.SetLabel(tag + " (split)");
  });
}

template <class Device>
void add_mse_cases(const std::string& dev, std::int64_t n, std::int64_t h, const Peaks& peaks) {
  using B = Backend<Device>;
  using T = Tensor<float, Device>;
  const Shape ps = Shape::nchw(n, 2, h, h);
  const double bytes = 4.0 * static_cast<double>(ps.numel());
  const LossArgs a{LossKind::mse, static_cast<std::int64_t>(ps.numel()), 1.0f};
  const std::string shape = shape_tag(2, h, n);
  add_case<Device>("mse_fwd/" + dev + "/" + shape, 2 * bytes, false, peaks, [=](auto& st, auto& t) {
    T &p = t.get("p", ps), &y = t.get("y", ps), &out = t.get("out", Shape{1}, 0, 0);
    Timing<Device>::loop(st, [&] { B::loss_forward(a, p, y, out); });
    st.SetLabel("mean reduction (to a device scalar)");
  });
  add_case<Device>("mse_bwd/" + dev + "/" + shape, 3 * bytes, false, peaks, [=](auto& st, auto& t) {
    T &p = t.get("p", ps), &y = t.get("y", ps), &dp = t.get("dp", ps, 0, 0);
    Timing<Device>::loop(st, [&] { B::loss_backward(a, p, y, dp); });
    st.SetLabel("");
  });
}

// Adam over every parameter of a U-Net: the optimizer's step(), one
// Backend::adam_step per tensor, as in training. Bytes: p, grad, m, v read;
// p, m, v written.
template <class Net>
void add_adam_case(const std::string& model, const std::string& dev, const Peaks& peaks) {
  using Device = typename Net::device;
  const double bytes = 7 * 4.0 * static_cast<double>(Net::parameter_count);
  add_case<Device>("adam_step/" + dev + "/" + model, bytes, false, peaks, [=](auto& st, auto&) {
    auto net = std::make_unique<Net>();
    Adam<Device> adam(collect_parameters(*net));
    Timing<Device>::loop(st, [&] { adam.step(); });
    st.counters["params"] = static_cast<double>(Net::parameter_count);
    st.SetLabel(std::to_string(collect_parameters(*net).size()) + " tensors");
  });
}

// Everything above at the U-Net's shapes. `dev` is the name segment ("cpu", "cuda/fp32").
template <class Device>
void register_layer_benchmarks(const std::string& dev, const Peaks& peaks) {
  for (const ShapeSet& set : unet_shape_sets()) {
    const std::int64_t n = set.n;
    const int top = set.levels.front().h;
    const std::string tag = "(UNet level, " + std::to_string(top) + "x" + std::to_string(top) + " input)";
    for (std::size_t i = 0; i < set.levels.size(); ++i) {
      const auto [c, h] = set.levels[i];
      const bool bottleneck = i + 1 == set.levels.size();
      add_conv_cases<Device>(tag, dev, n, c, c, 3, h, peaks);
      // The reduce conv (2C -> C, 1x1) runs before the upsample, on the level below's H/2 grid.
      if (!bottleneck) add_conv_cases<Device>(tag, dev, n, 2 * c, c, 1, h / 2, peaks);
      add_batchnorm_cases<Device>(tag, dev, n, c, h, peaks);
      add_relu_cases<Device>(tag, dev, n, c, h, peaks);
      if (!bottleneck) {
        add_maxpool_cases<Device>(tag, dev, n, c, h, peaks);
        add_upsample_cases<Device>(tag, dev, n, c, h / 2, peaks);  // C@H/2 -> C@H (after the reduce conv)
        add_concat_cases<Device>(tag, dev, n, c, h, peaks);
      }
    }
    add_mse_cases<Device>(dev, n, top, peaks);
  }
  if (smoke()) {
    add_adam_case<UNet<1, 2, 4, 2, Device>>("UNetTiny", dev, peaks);
  } else {
    add_adam_case<UNetSmall<Device>>("UNetSmall", dev, peaks);
    add_adam_case<UNetBase<Device>>("UNetBase", dev, peaks);
  }
}

}  // namespace kiln::bench
