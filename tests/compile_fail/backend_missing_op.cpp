// Must NOT compile: a device whose Backend table lacks the required ops of kiln::BackendOps.
#include <kiln/kiln.hpp>

struct Toy {};

namespace kiln {
template <>
inline constexpr bool backend_included<Toy> = true;
template <>
struct Backend<Toy> {
  static constexpr bool fused_batchnorm_relu = false;
  static constexpr bool multi_tensor_adam = false;
  static constexpr bool synchronised_batchnorm = false;
  static void relu_forward(const Tensor<float, Toy>&, Tensor<float, Toy>&) {}
};
static_assert(backend_table_complete<Toy>());
}  // namespace kiln

int main() {}
