// The edgeslim firmware harness: runs an exported C package, unchanged, on an emulated Cortex-M.
//
// It reports, into result.txt on the host (semihosting), one fact per line:
//   calibration <instructions> <ticks>  a loop of known length, to turn SysTick ticks into instructions
//   arena_capacity <bytes>              the arena buffer this firmware was linked with
//   arena_used <bytes>                  interpreter.arena_used_bytes() with that whole buffer
//   io <input bytes> <output bytes>     per sample, all input (output) tensors together
//   sample <i> <ticks> <hex outputs>    one inference on the i-th input read from inputs.bin
//   profile <ticks> <n>                 the first sample once more, each operator timed: the whole
//   op <i> <ticks>                        inference, then the i-th operator invocation's ticks
//   stack_used <bytes>                  the deepest the stack went (painted at reset)
//   done <samples>
// An "error <what> <code>" or "fault ..." line ends a failed run.
//
// With a file probe.bin (a little-endian uint32 N) it only tries AllocateTensors() on the first N
// bytes of the arena and says "probe <N> <1 or 0>". The host finds the smallest arena with such runs,
// one per size: some kernels (TFLite Micro's per-channel fully connected) write into persistent
// buffers they did not check they got, so a too-small arena can fault, and a fault must end only
// its own run, never the measurement.
#include <array>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include "model_data.h"
#include "model_ops.h"
#include "semihost.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

extern uint8_t tensor_arena[];
extern const size_t tensor_arena_size;
extern "C" uint32_t edgeslim_stack_used(void);

namespace {

constexpr uint32_t kCalibrationLoops = 1u << 20;  // two instructions each (subs, bne)
constexpr uint32_t kSysTickMax = 0xFFFFFFu;       // SysTick is a 24-bit down-counter
constexpr size_t kMaxIoBytes = 1u << 20;

volatile uint32_t g_systick_wraps = 0;
// TFLite Micro built for a microcontroller halts a failed check by spinning forever (AbortImpl in
// op_macros.h). Allocation takes far fewer instructions than this in any model that runs, so past the
// deadline (in SysTick wraps of 2^24 ticks: 268 million instructions, some hundred times what the
// largest MLPerf Tiny model needs) the run ends, saying so.
constexpr uint32_t kAllocateWraps = 16;
volatile uint32_t g_halt_after = 0;  // 0: no deadline
int g_out = -1;

#define REG(addr) (*reinterpret_cast<volatile uint32_t*>(addr))
constexpr uintptr_t kSysTickCtrl = 0xE000E010, kSysTickLoad = 0xE000E014, kSysTickValue = 0xE000E018;
constexpr uintptr_t kIcsr = 0xE000ED04;
constexpr uint32_t kPendSysTick = 1u << 26;

// Under QEMU's -icount the SysTick (processor clock) advances with executed instructions, so tick
// counts are exact instruction counts up to the calibrated ratio.
void StartSysTick() {
  REG(kSysTickLoad) = kSysTickMax;
  REG(kSysTickValue) = 0;
  REG(kSysTickCtrl) = 0x7;  // enable, interrupt on wrap, processor clock
  // The write above leaves the counter at 0 until its first reload, which raises no interrupt.
  while (REG(kSysTickValue) == 0) {
  }
}

uint64_t Ticks() {
  __asm__ volatile("cpsid i" ::: "memory");
  uint64_t wraps = g_systick_wraps;
  uint32_t value = REG(kSysTickValue);
  if (REG(kIcsr) & kPendSysTick) {  // wrapped, but the handler has not run yet
    value = REG(kSysTickValue);
    ++wraps;
  }
  __asm__ volatile("cpsie i" ::: "memory");
  return wraps * (uint64_t{kSysTickMax} + 1) + (kSysTickMax - value);
}

#include "op_timer.h"  // uses Ticks() above

// GCC hands inline assembly to ARMv6-M's assembler in divided syntax, where the flag-setting 16-bit
// subtract is spelled "sub"; in unified syntax (ARMv7-M and later) "sub" would not set the flags.
#if defined(__ARM_ARCH_6M__)
#define EDGESLIM_SUBS "sub %0, #1"
#else
#define EDGESLIM_SUBS "subs %0, %0, #1"
#endif
void CalibrationLoop(uint32_t n) { __asm__ volatile("1: " EDGESLIM_SUBS "\n\tbne 1b" : "+r"(n) : : "cc"); }

class Line {
 public:
  Line& operator<<(const char* s) {
    while (*s) Put(*s++);
    return *this;
  }
  Line& operator<<(uint64_t v) {
    char digits[20];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0) Put(digits[--n]);
    return *this;
  }
  void Hex(const uint8_t* data, size_t n) {
    static const char kHex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; ++i) {
      Put(kHex[data[i] >> 4]);
      Put(kHex[data[i] & 0xF]);
    }
  }
  ~Line() {
    Put('\n');
    Flush();
  }

 private:
  void Put(char c) {
    if (used_ == sizeof(buffer_)) Flush();
    buffer_[used_++] = c;
  }
  void Flush() {
    if (g_out >= 0 && used_ > 0) semihost_write(g_out, buffer_, used_);
    used_ = 0;
  }
  char buffer_[128];
  size_t used_ = 0;
};

int Fail(const char* what, uint64_t code) {
  Line() << "error " << what << " " << code;
  return 1;
}

alignas(tflite::MicroInterpreter) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];

tflite::MicroInterpreter* NewInterpreter(const tflite::Model* model, const tflite::MicroOpResolver& resolver,
                                         size_t arena_bytes) {
  return new (g_interpreter_storage)
      tflite::MicroInterpreter(model, resolver, tensor_arena, arena_bytes);
}

TfLiteStatus AllocateWatched(tflite::MicroInterpreter* interpreter) {
  g_halt_after = g_systick_wraps + kAllocateWraps;
  const TfLiteStatus status = interpreter->AllocateTensors();
  g_halt_after = 0;
  return status;
}

bool Allocates(const tflite::Model* model, const ModelOpResolver& resolver, size_t arena_bytes) {
  tflite::MicroInterpreter* interpreter = NewInterpreter(model, resolver, arena_bytes);
  const bool ok = AllocateWatched(interpreter) == kTfLiteOk;
  interpreter->~MicroInterpreter();
  return ok;
}

// The arena size asked for by probe.bin, or 0 when there is no such file.
uint32_t ProbeSize() {
  const int handle = semihost_open("probe.bin", kModeReadBinary);
  if (handle < 0) return 0;
  uint8_t bytes[4] = {0, 0, 0, 0};
  const bool read = semihost_read(handle, bytes, sizeof(bytes)) == 0;
  semihost_close(handle);
  if (!read) return 0;
  return uint32_t{bytes[0]} | uint32_t{bytes[1]} << 8 | uint32_t{bytes[2]} << 16 | uint32_t{bytes[3]} << 24;
}

size_t InputBytes(tflite::MicroInterpreter& interpreter) {
  size_t total = 0;
  for (size_t i = 0; i < interpreter.inputs_size(); ++i) total += interpreter.input(i)->bytes;
  return total;
}

size_t OutputBytes(tflite::MicroInterpreter& interpreter) {
  size_t total = 0;
  for (size_t i = 0; i < interpreter.outputs_size(); ++i) total += interpreter.output(i)->bytes;
  return total;
}

bool ReadSample(int handle, tflite::MicroInterpreter& interpreter) {
  for (size_t i = 0; i < interpreter.inputs_size(); ++i) {
    TfLiteTensor* input = interpreter.input(i);
    if (semihost_read(handle, input->data.raw, input->bytes) != 0) return false;
  }
  return true;
}

void ZeroInputs(tflite::MicroInterpreter& interpreter) {
  for (size_t i = 0; i < interpreter.inputs_size(); ++i) {
    TfLiteTensor* input = interpreter.input(i);
    for (size_t b = 0; b < input->bytes; ++b) input->data.uint8[b] = 0;
  }
}

int Run() {
  g_out = semihost_open("result.txt", kModeWriteBinary);
  if (g_out < 0) return 1;
  Line() << "edgeslim-firmware 1";
  const tflite::Model* model = tflite::GetModel(g_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) return Fail("schema", model->version());
  static ModelOpResolver resolver;
  if (RegisterModelOps(resolver) != kTfLiteOk) return Fail("resolver", kModelOpCount);

  StartSysTick();
  const uint32_t probe = ProbeSize();
  if (probe != 0) {
    if (probe > tensor_arena_size) return Fail("probe", probe);
    Line() << "probe " << uint64_t{probe} << " " << uint64_t{Allocates(model, resolver, probe) ? 1u : 0u};
    Line() << "done 0";
    return 0;
  }

  const uint64_t t0 = Ticks();
  CalibrationLoop(kCalibrationLoops);
  const uint64_t t1 = Ticks();
  Line() << "calibration " << uint64_t{2} * kCalibrationLoops << " " << (t1 - t0);

  Line() << "arena_capacity " << uint64_t{tensor_arena_size};
  tflite::MicroInterpreter* interpreter = NewInterpreter(model, resolver, tensor_arena_size);
  if (AllocateWatched(interpreter) != kTfLiteOk) return Fail("allocate", tensor_arena_size);
  Line() << "arena_used " << uint64_t{interpreter->arena_used_bytes()};
  const size_t in_bytes = InputBytes(*interpreter), out_bytes = OutputBytes(*interpreter);
  Line() << "io " << uint64_t{in_bytes} << " " << uint64_t{out_bytes};
  if (in_bytes == 0 || in_bytes > kMaxIoBytes || out_bytes > kMaxIoBytes) return Fail("io", in_bytes);

  // Samples come from inputs.bin; without it, one inference on the zero-filled input.
  const int handle = semihost_open("inputs.bin", kModeReadBinary);
  const int file_bytes = handle >= 0 ? semihost_flen(handle) : 0;
  const size_t samples = handle >= 0 ? static_cast<size_t>(file_bytes) / in_bytes : 1;
  for (size_t s = 0; s < samples; ++s) {
    // Each sample starts from the initial state: a fused LSTM keeps its state in variable tensors.
    if (interpreter->Reset() != kTfLiteOk) return Fail("reset", s);
    if (handle >= 0 && !ReadSample(handle, *interpreter)) return Fail("read", s);
    if (handle < 0) ZeroInputs(*interpreter);  // the arena is not zero after AllocateTensors()
    const uint64_t start = Ticks();
    const TfLiteStatus status = interpreter->Invoke();
    const uint64_t ticks = Ticks() - start;
    if (status != kTfLiteOk) return Fail("invoke", static_cast<uint64_t>(status));
    Line line;
    line << "sample " << uint64_t{s} << " " << ticks << " ";
    for (size_t i = 0; i < interpreter->outputs_size(); ++i) {
      const TfLiteTensor* output = interpreter->output(i);
      line.Hex(reinterpret_cast<const uint8_t*>(output->data.raw), output->bytes);
    }
  }
  // The first sample once more, through a second interpreter whose kernels are timed one by one: the
  // samples above ran with no timing code in their path.
  interpreter->~MicroInterpreter();
  static TimingResolver timing(resolver);
  interpreter = NewInterpreter(model, timing, tensor_arena_size);
  if (AllocateWatched(interpreter) != kTfLiteOk) return Fail("allocate", tensor_arena_size);
  if (handle >= 0 && (semihost_seek(handle, 0) != 0 || !ReadSample(handle, *interpreter))) {
    return Fail("read", 0);
  }
  if (handle < 0) ZeroInputs(*interpreter);
  g_timed_ops = 0;
  const uint64_t profile_start = Ticks();
  if (interpreter->Invoke() != kTfLiteOk) return Fail("invoke", 0);
  Line() << "profile " << (Ticks() - profile_start) << " " << uint64_t{g_timed_ops};
  for (size_t i = 0; i < g_timed_ops && i < kMaxTimedOps; ++i) {
    Line() << "op " << uint64_t{i} << " " << uint64_t{g_op_ticks[i]};
  }
  if (handle >= 0) semihost_close(handle);
  Line() << "stack_used " << uint64_t{edgeslim_stack_used()};
  Line() << "done " << uint64_t{samples};
  return 0;
}

}  // namespace

extern "C" void SysTick_Handler(void) {
  g_systick_wraps = g_systick_wraps + 1;
  if (g_halt_after != 0 && g_systick_wraps > g_halt_after) {
    Line() << "error halted " << uint64_t{kAllocateWraps};  // TFLite Micro stopped on a failed check
    semihost_exit(0);
  }
}

extern "C" void edgeslim_report_fault(uint32_t cfsr, uint32_t hfsr, uint32_t address) {
  Line() << "fault cfsr " << uint64_t{cfsr} << " hfsr " << uint64_t{hfsr} << " address " << uint64_t{address};
}

extern "C" void edgeslim_report_abort(int code) {
  Line() << "error abort " << uint64_t(static_cast<uint32_t>(code));  // a failed check in TFLite Micro
}

int main() {
  const int rc = Run();
  if (g_out >= 0) semihost_close(g_out);
  return rc;
}
