#pragma once
// Fibers: the execution contexts the emulator runs CUDA threads on. A switch saves the
// callee-saved registers, MXCSR and the x87 control word on the current stack and loads the other
// fiber's stack pointer: no system call, a few nanoseconds. Elsewhere than x86-64 (or with
// KILN_EMU_UCONTEXT=1) ucontext is used, which is correct but makes a system call per switch.
#include "kiln/gpu/config.hpp"

#if !KILN_GPU_REAL && !KILN_EMU_THREADS

#include <cstddef>
#include <cstdint>

#if KILN_EMU_UCONTEXT
#include <ucontext.h>
#endif
#if KILN_EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#if !KILN_EMU_UCONTEXT
// kiln_emu_fiber_switch(save, load): pushes the callee-saved state, stores rsp in *save, switches
// to the stack `load` and pops the state saved there. A weak symbol in a COMDAT section, so that
// every translation unit may carry it (the library is header-only) and the linker keeps one.
asm(R"(
    .pushsection .text.kiln_emu_fiber_switch,"axG",@progbits,kiln_emu_fiber_switch,comdat
    .weak kiln_emu_fiber_switch
    .type kiln_emu_fiber_switch,@function
    .p2align 4
kiln_emu_fiber_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    stmxcsr 8(%rsp)
    fnstcw 12(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr 8(%rsp)
    fldcw 12(%rsp)
    addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size kiln_emu_fiber_switch, .-kiln_emu_fiber_switch
    .popsection
)");
extern "C" void kiln_emu_fiber_switch(void** save_stack_pointer, void* load_stack_pointer);
#endif

namespace kiln::gpu::emu {

struct FiberContext {
#if KILN_EMU_UCONTEXT
  ucontext_t context{};
#else
  void* stack_pointer = nullptr;
#endif
  // The stack the fiber runs on (for AddressSanitizer's bookkeeping).
  void* stack_bottom = nullptr;
  std::size_t stack_size = 0;
};

// Makes `fiber` start executing entry() on the given stack at its first switch. entry must never
// return: it ends by switching away for good.
inline void prepare_fiber(FiberContext& fiber, void* stack_bottom, std::size_t stack_size, void (*entry)()) {
  fiber.stack_bottom = stack_bottom;
  fiber.stack_size = stack_size;
#if KILN_EMU_UCONTEXT
  getcontext(&fiber.context);
  fiber.context.uc_stack.ss_sp = stack_bottom;
  fiber.context.uc_stack.ss_size = stack_size;
  fiber.context.uc_link = nullptr;
  makecontext(&fiber.context, entry, 0);
#else
  // Lay out the frame kiln_emu_fiber_switch pops: FP control state, r15..r12, rbx, rbp = 0 (ends
  // frame-pointer walks), then entry as the return address. Above it a fake return address 0, so
  // entry() starts with rsp % 16 == 8 as after a call, and unwinders stop there.
  auto top = (reinterpret_cast<std::uintptr_t>(stack_bottom) + stack_size) & ~std::uintptr_t{15};
  auto* slot = reinterpret_cast<std::uint64_t*>(top - 8);
  slot[0] = 0;                                        // fake return address of entry()
  slot[-1] = reinterpret_cast<std::uint64_t>(entry);  // popped by ret
  for (int i = 2; i <= 7; ++i) slot[-i] = 0;          // rbp, rbx, r12, r13, r14, r15
  std::uint32_t fp_state[2];
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(fp_state[0]), "=m"(fp_state[1]));
  auto* fp_area = reinterpret_cast<std::uint32_t*>(slot - 9);  // 16 bytes at the bottom
  fp_area[2] = fp_state[0];                                    // mxcsr at sp+8
  fp_area[3] = fp_state[1] & 0xffffu;                          // x87 control word at sp+12
  fiber.stack_pointer = slot - 9;
#endif
}

// The context of the worker's scheduler, i.e. the OS thread's own stack.
inline thread_local FiberContext scheduler_fiber;

#if KILN_EMU_ASAN
// AddressSanitizer must be told about every stack change (fake stacks, stack bounds).
inline void before_switch(void** fake_stack_save, const FiberContext& to) {
  __sanitizer_start_switch_fiber(fake_stack_save, to.stack_bottom, to.stack_size);
}
inline void after_switch(void* fake_stack_save) { __sanitizer_finish_switch_fiber(fake_stack_save, nullptr, nullptr); }
#endif

inline void switch_fiber(FiberContext& from, FiberContext& to) {
#if KILN_EMU_ASAN
  void* fake_stack = nullptr;
  before_switch(&fake_stack, to);
#endif
#if KILN_EMU_UCONTEXT
  swapcontext(&from.context, &to.context);
#else
  kiln_emu_fiber_switch(&from.stack_pointer, to.stack_pointer);
#endif
#if KILN_EMU_ASAN
  after_switch(fake_stack);
#endif
}

// First thing a new fiber does (learns the scheduler's stack bounds for AddressSanitizer).
inline void fiber_started() {
#if KILN_EMU_ASAN
  const void* bottom = nullptr;
  std::size_t size = 0;
  __sanitizer_finish_switch_fiber(nullptr, &bottom, &size);
  scheduler_fiber.stack_bottom = const_cast<void*>(bottom);
  scheduler_fiber.stack_size = size;
#endif
}

// Last thing a fiber does: leaves for the scheduler and is never resumed.
[[noreturn]] inline void fiber_finished(FiberContext& self) {
#if KILN_EMU_ASAN
  before_switch(nullptr, scheduler_fiber);
#endif
#if KILN_EMU_UCONTEXT
  swapcontext(&self.context, &scheduler_fiber.context);
#else
  kiln_emu_fiber_switch(&self.stack_pointer, scheduler_fiber.stack_pointer);
#endif
  __builtin_trap();
}

}  // namespace kiln::gpu::emu

#endif  // !KILN_GPU_REAL && !KILN_EMU_THREADS
