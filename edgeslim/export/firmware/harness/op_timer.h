// Per-operator timing without TFLite Micro's profiler (compiled out of release builds): a resolver
// that hands the interpreter copies of the real registrations whose invoke is a trampoline, which
// reads the SysTick counter around the real kernel. main.cc includes this after defining Ticks().
//
// One trampoline per distinct registration (at most the package's kModelOpCount); each invocation is
// recorded in execution order, which for a model without control flow is the order of the subgraph's
// operators. The builder passes the model's operator count (EDGESLIM_OPERATORS), so the records take
// 4 bytes per operator of RAM: an 8 KB part has none to spare for more.
#ifndef EDGESLIM_OP_TIMER_H_
#define EDGESLIM_OP_TIMER_H_

#include <utility>

#include "tensorflow/lite/micro/micro_op_resolver.h"

#ifndef EDGESLIM_OPERATORS
#define EDGESLIM_OPERATORS 1
#endif
constexpr size_t kMaxTimedKinds = kModelOpCount > 0 ? kModelOpCount : 1;
constexpr size_t kMaxTimedOps = EDGESLIM_OPERATORS;

using InvokeFn = TfLiteStatus (*)(TfLiteContext*, TfLiteNode*);
TFLMRegistration g_timed[kMaxTimedKinds];
InvokeFn g_real_invoke[kMaxTimedKinds];
uint32_t g_op_ticks[kMaxTimedOps];
size_t g_timed_ops = 0;  // invocations so far, also those past kMaxTimedOps

template <size_t N>
TfLiteStatus TimedInvoke(TfLiteContext* context, TfLiteNode* node) {
  const uint64_t start = Ticks();
  const TfLiteStatus status = g_real_invoke[N](context, node);
  const uint64_t ticks = Ticks() - start;
  if (g_timed_ops < kMaxTimedOps) g_op_ticks[g_timed_ops] = static_cast<uint32_t>(ticks);
  ++g_timed_ops;
  return status;
}

template <size_t... N>
constexpr std::array<InvokeFn, sizeof...(N)> TimedTable(std::index_sequence<N...>) {
  return {&TimedInvoke<N>...};
}
constexpr std::array<InvokeFn, kMaxTimedKinds> kTimedInvoke =
    TimedTable(std::make_index_sequence<kMaxTimedKinds>{});

class TimingResolver : public tflite::MicroOpResolver {
 public:
  explicit TimingResolver(const tflite::MicroOpResolver& inner) : inner_(inner) {}

  const TFLMRegistration* FindOp(tflite::BuiltinOperator op) const override { return Wrap(inner_.FindOp(op)); }
  const TFLMRegistration* FindOp(const char* op) const override { return Wrap(inner_.FindOp(op)); }
  tflite::TfLiteBridgeBuiltinParseFunction GetOpDataParser(tflite::BuiltinOperator op) const override {
    return inner_.GetOpDataParser(op);
  }

 private:
  const TFLMRegistration* Wrap(const TFLMRegistration* real) const {
    if (real == nullptr || real->invoke == nullptr) return real;
    for (size_t k = 0; k < kinds_; ++k) {
      if (originals_[k] == real) return &g_timed[k];
    }
    if (kinds_ == kMaxTimedKinds) return real;  // untimed: the profile then misses its share
    g_timed[kinds_] = *real;
    g_real_invoke[kinds_] = real->invoke;
    g_timed[kinds_].invoke = kTimedInvoke[kinds_];
    originals_[kinds_] = real;
    return &g_timed[kinds_++];
  }

  const tflite::MicroOpResolver& inner_;
  mutable const TFLMRegistration* originals_[kMaxTimedKinds] = {};
  mutable size_t kinds_ = 0;
};

#endif  // EDGESLIM_OP_TIMER_H_
