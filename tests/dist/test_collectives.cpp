// kiln/dist under mpirun -np 2 (or more): the MPI communicator against serial sums, the
// bucketed gradient all-reduce against a plain one, synchronised BatchNorm against one
// process holding the whole batch. Every TEST_CASE is collective: all ranks run it.
#include <doctest/doctest.h>

#include <kiln/dist/gradient_buckets.hpp>
#include <kiln/dist/local.hpp>
#include <kiln/dist/mpi.hpp>
#include <kiln/dist/sync_batchnorm.hpp>
#include <kiln/kiln.hpp>

#include <cmath>
#include <cstring>
#include <optional>
#include <tuple>
#include <vector>

using namespace kiln;
using kiln::dist::MpiCommunicator;
using kiln::dist::ReduceOp;

static_assert(dist::Communicator<MpiCommunicator>);
static_assert(dist::Communicator<dist::LocalCommunicator<Cpu>>);

namespace {

// The value rank r holds at index i of tensor t: spread over many exponents and signs, so
// that a sum in another order or precision would show.
float value(int rank, int t, std::size_t i) {
  Rng rng(0x5eedull + 7919ull * std::uint64_t(rank) + 104729ull * std::uint64_t(t) + 15485863ull * i);
  const float mantissa = rng.uniform(-1.0f, 1.0f);
  return std::ldexp(mantissa, int(rng.below(40)) - 20);
}

std::vector<Tensor<float, Cpu>> make_tensors(const std::vector<std::size_t>& sizes, int rank) {
  std::vector<Tensor<float, Cpu>> out;
  for (std::size_t t = 0; t < sizes.size(); ++t) {
    std::vector<float> host(sizes[t]);
    for (std::size_t i = 0; i < sizes[t]; ++i) host[i] = value(rank, int(t), i);
    out.push_back(sizes[t] ? Tensor<float, Cpu>::from_host(Shape{std::int64_t(sizes[t])}, host) : Tensor<float, Cpu>());
  }
  return out;
}

std::vector<Tensor<float, Cpu>*> pointers(std::vector<Tensor<float, Cpu>>& ts) {
  std::vector<Tensor<float, Cpu>*> p;
  for (auto& t : ts) p.push_back(&t);
  return p;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Counts the elements that differ from the serial reduction (rank 0's value, then rank 1's
// added, ...), bit for bit.
std::size_t mismatches(const std::vector<Tensor<float, Cpu>>& got, const std::vector<std::size_t>& sizes, int ranks,
                       ReduceOp op) {
  std::size_t bad = 0;
  for (std::size_t t = 0; t < sizes.size(); ++t) {
    const std::vector<float> v = sizes[t] ? got[t].to_vector() : std::vector<float>{};
    REQUIRE(v.size() == sizes[t]);
    for (std::size_t i = 0; i < sizes[t]; ++i) {
      float want = value(0, int(t), i);
      for (int r = 1; r < ranks; ++r)
        want = op == ReduceOp::max ? std::max(want, value(r, int(t), i)) : want + value(r, int(t), i);
      if (op == ReduceOp::mean) want /= float(ranks);
      bad += !same_bits(v[i], want);
    }
  }
  return bad;
}

}  // namespace

TEST_CASE("all_reduce of awkward sizes equals the serial sum, mean and max exactly") {
  MpiCommunicator comm;
  REQUIRE(comm.size() >= 2);
  // (Exact for 2 ranks in any order; with more, MPI's order may differ from the serial one.)
  const std::vector<std::size_t> sizes = {0, 1, 7, 1000003, 7, 0, 1};
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::mean, ReduceOp::max}) {
    CAPTURE(int(op));
    auto tensors = make_tensors(sizes, comm.rank());
    auto list = pointers(tensors);
    comm.all_reduce(dist::TensorList<Cpu>(list), op);
    if (comm.size() == 2) CHECK(mismatches(tensors, sizes, comm.size(), op) == 0);
    // Started and waited: the same.
    auto again = make_tensors(sizes, comm.rank());
    auto list2 = pointers(again);
    auto pending = comm.start_all_reduce(dist::TensorList<Cpu>(list2), op);
    pending.wait();
    for (std::size_t t = 0; t < sizes.size(); ++t)
      if (sizes[t]) CHECK(again[t].to_vector() == tensors[t].to_vector());
  }
  // One tensor at a time, each size alone.
  for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(7), std::size_t(1000003)}) {
    auto one = make_tensors({n}, comm.rank());
    auto list = pointers(one);
    comm.all_reduce(dist::TensorList<Cpu>(list), ReduceOp::sum);
    if (comm.size() == 2) CHECK(mismatches(one, {n}, comm.size(), ReduceOp::sum) == 0);
  }
  // Deliberate bug: rank 0 leaves its value out, and the check sees it.
  if (comm.size() == 2) {
    auto bad = make_tensors({7}, comm.rank());
    if (comm.rank() == 0) bad[0].zero();
    auto list = pointers(bad);
    comm.all_reduce(dist::TensorList<Cpu>(list), ReduceOp::sum);
    CHECK(mismatches(bad, {7}, comm.size(), ReduceOp::sum) > 0);
  }
}

TEST_CASE("host all_reduce, broadcast and barrier") {
  MpiCommunicator comm;
  std::vector<double> v = {double(comm.rank()) + 0.5, -double(comm.rank()), 1.0};
  comm.all_reduce(std::span<double>(v), ReduceOp::sum);
  const double n = comm.size();
  CHECK(v[0] == n * (n - 1) / 2 + 0.5 * n);
  CHECK(v[2] == n);
  std::vector<double> m = {double(comm.rank())};
  comm.all_reduce(std::span<double>(m), ReduceOp::max);
  CHECK(m[0] == n - 1);

  const int root = comm.size() - 1;
  auto tensors = make_tensors({5, 0, 1000003}, comm.rank());
  auto list = pointers(tensors);
  comm.broadcast(dist::TensorList<Cpu>(list), root);
  const auto want = make_tensors({5, 0, 1000003}, root);
  CHECK(tensors[0].to_vector() == want[0].to_vector());
  CHECK(tensors[2].to_vector() == want[2].to_vector());
  comm.barrier();
}

namespace {

using Small = Sequential<Conv2d<2, 6, 3>, BatchNorm2d<6>, ReLU<>, Conv2d<6, 4, 3>, BatchNorm2d<4>, Conv2d<4, 3, 1>>;

Tensor<float, Cpu> random_tensor(const Shape& s, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(s.numel());
  for (float& x : v) x = rng.uniform(-1.0f, 1.0f);
  return Tensor<float, Cpu>::from_host(s, v);
}

// A batch slice [first, first + count) along N.
Tensor<float, Cpu> slice(const Tensor<float, Cpu>& t, std::int64_t first, std::int64_t count) {
  const Shape& s = t.shape();
  const std::size_t per = s.numel() / std::size_t(s.n());
  const std::vector<float> all = t.to_vector();
  std::vector<float> part(all.begin() + std::ptrdiff_t(per * std::size_t(first)),
                          all.begin() + std::ptrdiff_t(per * std::size_t(first + count)));
  return Tensor<float, Cpu>::from_host(Shape::nchw(count, s.c(), s.h(), s.w()), part);
}

std::vector<std::vector<float>> gradients(Network<Small>& net) {
  std::vector<std::vector<float>> g;
  for (auto& s : collect_parameters(net)) g.push_back(s.grad->to_vector());
  return g;
}

double worst_relative(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0, scale = 1e-30;
  for (std::size_t i = 0; i < a.size(); ++i) scale = std::max(scale, double(std::fabs(b[i])));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - double(b[i])) / scale);
  return worst;
}

}  // namespace

TEST_CASE("GradientBuckets: buckets start during backward and give the plain mean bit for bit") {
  MpiCommunicator comm;
  Network<Small> net;
  Rng init(3);
  net.reset_parameters(init);
  dist::broadcast_state(comm, net);
  const Tensor<float, Cpu> x = random_tensor(Shape::nchw(2, 2, 8, 8), 100 + std::uint64_t(comm.rank()));
  const Tensor<float, Cpu> dy = random_tensor(Shape::nchw(2, 3, 8, 8), 200 + std::uint64_t(comm.rank()));

  // Reference: backward, then one plain all-reduce of every gradient.
  net.zero_grad();
  net.forward(x, Mode::train);
  net.backward(dy);
  std::vector<Tensor<float, Cpu>*> grads;
  for (auto& s : collect_parameters(net)) grads.push_back(s.grad);
  comm.all_reduce(dist::TensorList<Cpu>(grads), ReduceOp::mean);
  const auto want = gradients(net);

  // Small buckets: several of them, each started by the hook as its last gradient completes.
  dist::GradientBuckets<MpiCommunicator> buckets(comm, grads, 64);
  REQUIRE(buckets.bucket_count() >= 3);
  for (int step = 0; step < 2; ++step) {
    net.zero_grad();
    buckets.begin();
    net.forward(x, Mode::train);
    net.backward(dy);
    CHECK(buckets.started_during_backward() == buckets.bucket_count());
    buckets.finish();
    CHECK(gradients(net) == want);
  }
}

TEST_CASE("synchronised BatchNorm on two halves equals BatchNorm on the whole batch") {
  MpiCommunicator comm;
  const std::int64_t per = 3, all = per * comm.size();
  const Tensor<float, Cpu> x = random_tensor(Shape::nchw(all, 2, 6, 5), 11);
  const Tensor<float, Cpu> dy = random_tensor(Shape::nchw(all, 3, 6, 5), 12);

  // One process with the whole batch (no replica_sum set).
  Network<Small> whole;
  Rng init(5);
  whole.reset_parameters(init);
  whole.zero_grad();
  const Tensor<float, Cpu> y_whole = whole.forward(x, Mode::train).clone();
  whole.backward(dy);
  const auto g_whole = gradients(whole);

  auto run_half = [&](bool synced) {
    Network<Small> half;
    Rng init2(5);
    half.reset_parameters(init2);
    half.zero_grad();
    std::optional<dist::SyncBatchNormScope<MpiCommunicator>> scope;
    if (synced) scope.emplace(comm);
    const Tensor<float, Cpu> x_half = slice(x, per * comm.rank(), per);  // (backward reads it)
    const Tensor<float, Cpu> y = half.forward(x_half, Mode::train).clone();
    // Each rank back-propagates its part of the whole batch's dy: summed over the ranks, the
    // parameter gradients are the whole batch's.
    half.backward(slice(dy, per * comm.rank(), per));
    std::vector<Tensor<float, Cpu>*> grads;
    for (auto& s : collect_parameters(half)) grads.push_back(s.grad);
    comm.all_reduce(dist::TensorList<Cpu>(grads), ReduceOp::sum);  // the sums over both halves
    std::vector<float> running;
    half.visit([&](StateRef<Cpu> r) {
      if (r.kind == StateRef<Cpu>::Kind::buffer)
        for (float v : r.value->to_vector()) running.push_back(v);
    });
    return std::tuple{y.to_vector(), gradients(half), running};
  };
  std::vector<float> running_whole;
  whole.visit([&](StateRef<Cpu> r) {
    if (r.kind == StateRef<Cpu>::Kind::buffer)
      for (float v : r.value->to_vector()) running_whole.push_back(v);
  });

  const auto [y, g, running] = run_half(true);
  const std::vector<float> y_want = slice(y_whole, per * comm.rank(), per).to_vector();
  // Float sums over another split of the batch: a few units in the last place.
  const double tolerance = 2e-5;
  CHECK(worst_relative(y, y_want) < tolerance);
  // Gradients relative to the largest of them: the bias of a convolution that feeds a
  // BatchNorm has an exact gradient of 0, so its own scale is rounding noise.
  double scale = 0;
  for (const auto& t : g_whole)
    for (float v : t) scale = std::max(scale, double(std::fabs(v)));
  for (std::size_t i = 0; i < g.size(); ++i) {
    CAPTURE(i);
    double worst = 0;
    for (std::size_t k = 0; k < g[i].size(); ++k) worst = std::max(worst, std::fabs(double(g[i][k]) - g_whole[i][k]));
    CHECK(worst / scale < tolerance);
  }
  CHECK(worst_relative(running, running_whole) < tolerance);

  // Deliberate bug: per-rank statistics (no scope) are not the whole batch's.
  const auto [y_local, g_local, running_local] = run_half(false);
  CHECK(worst_relative(y_local, y_want) > 1e-3);
  CHECK(worst_relative(running_local, running_whole) > 1e-3);
}
