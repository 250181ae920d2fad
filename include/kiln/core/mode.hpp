#pragma once
// Mode: what a forward pass (and the memory planned for it) is for.
//   train: keep what backward needs; BatchNorm uses and updates batch statistics.
//   eval:  inference only; BatchNorm uses its running statistics, and a plan for
//          eval holds no gradients or saved state (see Arena).
namespace kiln {

enum class Mode { train, eval };

}  // namespace kiln
