// LibTorch operators that `tch` does not generate, reached from Rust through a C interface
// (`shared::native`): PyTorch's fused AdamW kernel, dropping a gradient (`set_to_none`),
// fbgemm's dynamically quantized int8 linear layer, and the autocast dtype. Every function
// catches C++ exceptions and returns them as a message (NULL on success), which the caller
// frees with `llms_free_message`.

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include "c_api.hpp"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

namespace {

using llms::guarded;
using llms::tensors;


// Quantized operators warn that quantized tensors are deprecated; the warning says nothing
// a user of these functions can act on.
struct QuietWarnings : c10::WarningHandler {
  void process(const c10::Warning&) override {}
};

c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

}  // namespace

extern "C" {

void llms_free_message(char* text) { free(text); }

char* llms_fused_adamw(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs,
                       at::Tensor** steps, size_t n, double lr, double beta1, double beta2, double weight_decay,
                       double eps) {
  return guarded([&] {
    at::_fused_adamw_(tensors(params, n), tensors(grads, n), tensors(exp_avgs, n), tensors(exp_avg_sqs, n), {},
                      tensors(steps, n), lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                      /*maximize=*/false);
  });
}

char* llms_drop_grad(at::Tensor* tensor) {
  return guarded([&] { tensor->mutable_grad() = at::Tensor(); });
}

// `values`: int8 `[out, in]`; `scales`: one per output row.
char* llms_qlinear_prepack(at::Tensor* values, at::Tensor* scales, at::Tensor* bias, void** packed) {
  return guarded([&] {
    QuietWarnings quiet;
    c10::WarningUtils::WarningHandlerGuard guard(&quiet);
    auto rows = scales->reshape({-1}).to(at::kDouble);
    auto weight = at::_make_per_channel_quantized_tensor(values->contiguous(), rows, at::zeros_like(rows, at::kLong), 0);
    std::vector<c10::IValue> stack{weight, bias ? c10::IValue(*bias) : c10::IValue()};
    op("quantized::linear_prepack").callBoxed(stack);
    *packed = new c10::IValue(std::move(stack.at(0)));
  });
}

char* llms_qlinear_dynamic(at::Tensor* input, void* packed, bool reduce_range, at::Tensor** out) {
  return guarded([&] {
    QuietWarnings quiet;
    c10::WarningUtils::WarningHandlerGuard guard(&quiet);
    std::vector<c10::IValue> stack{*input, *static_cast<c10::IValue*>(packed), reduce_range};
    op("quantized::linear_dynamic").callBoxed(stack);
    *out = new at::Tensor(stack.at(0).toTensor());
  });
}

void llms_qlinear_free(void* packed) { delete static_cast<c10::IValue*>(packed); }

char* llms_set_cuda_autocast_bfloat16() {
  return guarded([] { at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16); });
}

}  // extern "C"
