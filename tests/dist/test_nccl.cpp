// kiln/dist's NCCL communicator on real GPUs, one per rank: mpirun -np 2 (or more) on a machine
// with as many GPUs. Compiled by nvcc (KILN_NCCL); the checks of test_collectives.cpp for the MPI
// communicator: all-reduce exact against the serial sum, broadcast, and the bucketed gradient
// all-reduce started during backward equal to the plain one.
#define DOCTEST_CONFIG_IMPLEMENT
#include <kiln/cuda.hpp>  // first under nvcc
#include <doctest/doctest.h>

#include <kiln/dist/environment.hpp>
#include <kiln/dist/gradient_buckets.hpp>
#include <kiln/dist/nccl.hpp>
#include <kiln/kiln.hpp>

#include <cmath>
#include <cstring>
#include <vector>

using namespace kiln;
using kiln::dist::NcclCommunicator;
using kiln::dist::ReduceOp;

static_assert(dist::Communicator<NcclCommunicator>);

namespace {

NcclCommunicator* nccl = nullptr;

float value(int rank, int t, std::size_t i) {
  Rng rng(0x5eedull + 7919ull * std::uint64_t(rank) + 104729ull * std::uint64_t(t) + 15485863ull * i);
  return std::ldexp(rng.uniform(-1.0f, 1.0f), int(rng.below(40)) - 20);
}

std::vector<Tensor<float, Cuda>> make_tensors(const std::vector<std::size_t>& sizes, int rank) {
  std::vector<Tensor<float, Cuda>> out;
  for (std::size_t t = 0; t < sizes.size(); ++t) {
    std::vector<float> host(sizes[t]);
    for (std::size_t i = 0; i < sizes[t]; ++i) host[i] = value(rank, int(t), i);
    out.push_back(sizes[t] ? to<Cuda>(Tensor<float, Cpu>::from_host(Shape{std::int64_t(sizes[t])}, host))
                           : Tensor<float, Cuda>());
  }
  return out;
}

}  // namespace

TEST_CASE("NCCL all_reduce of awkward sizes equals the serial sum, mean and max exactly (2 ranks)") {
  const std::vector<std::size_t> sizes = {0, 1, 7, 1000003, 7};
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::mean, ReduceOp::max}) {
    auto tensors = make_tensors(sizes, nccl->rank());
    std::vector<Tensor<float, Cuda>*> list;
    for (auto& t : tensors) list.push_back(&t);
    nccl->all_reduce(dist::TensorList<Cuda>(list), op);
    if (nccl->size() != 2) continue;
    std::size_t bad = 0;
    for (std::size_t t = 0; t < sizes.size(); ++t) {
      if (!sizes[t]) continue;
      const std::vector<float> v = to<Cpu>(tensors[t]).to_vector();
      for (std::size_t i = 0; i < sizes[t]; ++i) {
        const float a = value(0, int(t), i), b = value(1, int(t), i);
        const float want = op == ReduceOp::max ? std::max(a, b) : op == ReduceOp::sum ? a + b : (a + b) / 2;
        // ncclAvg may multiply by 1/2 rather than divide: the same value for a power of two.
        bad += std::memcmp(&v[i], &want, sizeof want) != 0;
      }
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("NCCL broadcast and GradientBuckets") {
  auto tensors = make_tensors({5, 1000003}, nccl->rank());
  std::vector<Tensor<float, Cuda>*> list{&tensors[0], &tensors[1]};
  nccl->broadcast(dist::TensorList<Cuda>(list), 0);
  const auto want = make_tensors({5, 1000003}, 0);
  CHECK(to<Cpu>(tensors[1]).to_vector() == to<Cpu>(want[1]).to_vector());

  using Small = Sequential<Conv2d<2, 6, 3, Cuda>, BatchNorm2d<6, Cuda>, ReLU<Cuda>, Conv2d<6, 3, 3, Cuda>>;
  Network<Small> net;
  Rng init(3);
  net.reset_parameters(init);
  dist::broadcast_state(*nccl, net);
  Rng data(100 + std::uint64_t(nccl->rank()));
  std::vector<float> xs(2 * 2 * 8 * 8), dys(2 * 3 * 8 * 8);
  for (float& v : xs) v = data.uniform(-1, 1);
  for (float& v : dys) v = data.uniform(-1, 1);
  const auto x = to<Cuda>(Tensor<float, Cpu>::from_host(Shape::nchw(2, 2, 8, 8), xs));
  const auto dy = to<Cuda>(Tensor<float, Cpu>::from_host(Shape::nchw(2, 3, 8, 8), dys));
  std::vector<Tensor<float, Cuda>*> grads;
  for (auto& s : collect_parameters(net)) grads.push_back(s.grad);
  net.zero_grad();
  net.forward(x, Mode::train);
  net.backward(dy);
  nccl->all_reduce(dist::TensorList<Cuda>(grads), ReduceOp::mean);
  std::vector<std::vector<float>> plain;
  for (auto* g : grads) plain.push_back(to<Cpu>(*g).to_vector());

  dist::GradientBuckets<NcclCommunicator> buckets(*nccl, grads, 64);
  net.zero_grad();
  buckets.begin();
  net.forward(x, Mode::train);
  net.backward(dy);
  CHECK(buckets.started_during_backward() == buckets.bucket_count());
  buckets.finish();
  for (std::size_t i = 0; i < grads.size(); ++i) CHECK(to<Cpu>(*grads[i]).to_vector() == plain[i]);
}

int main(int argc, char** argv) {
  kiln::dist::MpiSession session(&argc, &argv);
  kiln::dist::MpiCommunicator mpi;
  int gpus = 0;
  if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus < mpi.size()) {
    if (mpi.rank() == 0)
      std::printf("SKIPPED: %d ranks need as many GPUs (NCCL takes one GPU per rank); %d visible\n", mpi.size(), gpus);
    return 77;
  }
  NcclCommunicator::select_local_gpu(kiln::dist::launch_info().local_rank);
  NcclCommunicator comm(mpi);
  nccl = &comm;
  doctest::Context context(argc, argv);
  return context.run();
}
