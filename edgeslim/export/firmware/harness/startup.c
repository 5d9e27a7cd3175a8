// Reset and fault handling for the harness on QEMU's Cortex-M boards (machines.json).
// Linked with -nostartfiles: this file is the whole C runtime start-up, so nothing hides in crt0.
#include <stdint.h>

#include "semihost.h"

extern uint32_t __data_load__[], __data_start__[], __data_end__[];
extern uint32_t __bss_start__[], __bss_end__[];
extern uint32_t __stack_top__[], __stack_limit__[];
extern void (*__preinit_array_start[])(void);
extern void (*__preinit_array_end[])(void);
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);

int main(void);
void SysTick_Handler(void);  // the harness counts SysTick wraps (main.cc)
void edgeslim_report_fault(uint32_t cfsr, uint32_t hfsr, uint32_t address);
void edgeslim_report_abort(int code);

// Static C++ objects register their destructors against this handle; they never run here.
void* __dso_handle = 0;

#define STACK_PAINT 0x5AC3A55Cu
#define REG(addr) (*(volatile uint32_t*)(addr))

// Flash is RAM on the MPS2 boards; an MPU region makes it read-only as on a real part, so a stray
// write (a null pointer) faults instead of silently corrupting the model or the vector table. Only
// on ARMv7-M cores (the builder defines EDGESLIM_MPU): ARMv6-M parts have no MPU to rely on.
static void protect_flash(void) {
#ifdef EDGESLIM_MPU
  REG(0xE000ED98) = 0;                              // MPU_RNR: region 0
  REG(0xE000ED9C) = EDGESLIM_FLASH_ORIGIN;          // MPU_RBAR: the flash's base
  REG(0xE000EDA0) = (6u << 24)                      // AP: read-only, privileged and unprivileged
                    | (1u << 17)                    // C: normal, cacheable
                    | ((EDGESLIM_FLASH_SIZE_LOG2 - 1u) << 1)  // SIZE: 2^(SIZE+1) bytes
                    | 1u;                           // ENABLE
  REG(0xE000ED94) = (1u << 2) | 1u;                 // MPU_CTRL: PRIVDEFENA (default map elsewhere), ENABLE
  REG(0xE000ED24) |= (1u << 16);                    // SHCSR: MemManage faults get their own handler
  __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
}

// Fill the unused stack with a pattern; edgeslim_stack_used() finds the deepest word overwritten.
static void paint_stack(void) {
  uint32_t* sp;
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  uint32_t* p = __stack_limit__;
  uint32_t* stop = sp - 16;  // leave this frame alone
  while (p < stop) *p++ = STACK_PAINT;
}

uint32_t edgeslim_stack_used(void) {
  const uint32_t* p = __stack_limit__;
  while (p < __stack_top__ && *p == STACK_PAINT) ++p;
  return (uint32_t)((uintptr_t)__stack_top__ - (uintptr_t)p);
}

// The Cortex-M55's Helium (MVE) instructions, which its CMSIS-NN kernels use, go through the FPU's
// coprocessors: they fault (NOCP) until CP10 and CP11 are enabled. The builder defines this per core.
static void enable_coprocessors(void) {
#ifdef EDGESLIM_ENABLE_CP10
  REG(0xE000ED88) |= (0xFu << 20);  // CPACR: full access to CP10 and CP11
  __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
}

void Reset_Handler(void) {
  for (uint32_t *src = __data_load__, *dst = __data_start__; dst < __data_end__;) *dst++ = *src++;
  for (uint32_t* dst = __bss_start__; dst < __bss_end__;) *dst++ = 0;
  paint_stack();
  protect_flash();
  enable_coprocessors();
  for (void (**f)(void) = __preinit_array_start; f < __preinit_array_end; ++f) (*f)();
  for (void (**f)(void) = __init_array_start; f < __init_array_end; ++f) (*f)();
  semihost_exit(main() == 0);
}

void Fault_Handler(void) {
#if defined(__ARM_ARCH_6M__)
  edgeslim_report_fault(0, 0, 0);  // ARMv6-M has no fault status registers: a HardFault is all it says
#else
  edgeslim_report_fault(REG(0xE000ED28), REG(0xE000ED2C), REG(0xE000ED38));  // CFSR, HFSR, BFAR
#endif
  semihost_exit(0);
}

void Default_Handler(void) { Fault_Handler(); }

// TFLite Micro's failed checks (TFLITE_ABORT) call abort(); newlib's nosys _exit would then spin
// forever, and the host would wait for its timeout. Both end the run at once, saying so.
void abort(void) {
  edgeslim_report_abort(134);
  semihost_exit(0);
  __builtin_unreachable();  // semihost_exit spins if the host does not stop the board
}

void _exit(int code) {
  edgeslim_report_abort(code);
  semihost_exit(0);
  __builtin_unreachable();
}

__attribute__((section(".isr_vector"), used)) void (*const g_vector_table[16])(void) = {
    (void (*)(void))__stack_top__,
    Reset_Handler,
    Default_Handler,  // NMI
    Fault_Handler,    // HardFault
    Fault_Handler,    // MemManage
    Fault_Handler,    // BusFault
    Fault_Handler,    // UsageFault
    0, 0, 0, 0,
    Default_Handler,  // SVCall
    Default_Handler,  // DebugMonitor
    0,
    Default_Handler,  // PendSV
    SysTick_Handler,
};
