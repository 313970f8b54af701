// LibTorch operators that `tch` does not generate, reached from Rust through a C interface
// (`shared::native`): PyTorch's fused AdamW kernel, dropping a gradient (`set_to_none`),
// fbgemm's dynamically quantized int8 linear layer, the autocast dtype, and a float32
// matrix-vector kernel for linear layers on a few rows (decoding). Every function
// catches C++ exceptions and returns them as a message (NULL on success), which the caller
// frees with `llms_free_message`.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include "c_api.hpp"

#include <immintrin.h>

#include <algorithm>
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

__attribute__((target("avx2,fma"))) inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// `y[r, i] = w[i, :] . x[r, :]` for the weight rows `[begin, end)`, every input row `r < m`:
// four weight rows at a time, each read from memory once and reused from the cache for the
// next input rows, eight floats per AVX2 fused multiply-add.
__attribute__((target("avx2,fma"))) void rows_times_weight_avx2(const float* x, int64_t m, const float* w,
                                                                 int64_t k, float* y, int64_t n, int64_t begin,
                                                                 int64_t end) {
  int64_t i = begin;
  for (; i + 4 <= end; i += 4) {
    const float* w0 = w + i * k;
    const float *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
    for (int64_t r = 0; r < m; ++r) {
      const float* xr = x + r * k;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      int64_t j = 0;
      for (; j + 8 <= k; j += 8) {
        __m256 xv = _mm256_loadu_ps(xr + j);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + j), xv, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + j), xv, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + j), xv, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + j), xv, a3);
      }
      float s0 = horizontal_sum(a0), s1 = horizontal_sum(a1), s2 = horizontal_sum(a2), s3 = horizontal_sum(a3);
      for (; j < k; ++j) {
        s0 += w0[j] * xr[j];
        s1 += w1[j] * xr[j];
        s2 += w2[j] * xr[j];
        s3 += w3[j] * xr[j];
      }
      float* yr = y + r * n + i;
      yr[0] = s0;
      yr[1] = s1;
      yr[2] = s2;
      yr[3] = s3;
    }
  }
  for (; i < end; ++i) {
    const float* wi = w + i * k;
    for (int64_t r = 0; r < m; ++r) {
      const float* xr = x + r * k;
      float s = 0.f;
      for (int64_t j = 0; j < k; ++j) s += wi[j] * xr[j];
      y[r * n + i] = s;
    }
  }
}

bool has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
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

// `input @ weight^T (+ bias)` for a float32 `input` `[m, k]` of a few rows and a float32
// `weight` `[n, k]` on the CPU, when no gradient is wanted and the CPU has AVX2 and FMA;
// otherwise `at::linear`. For `m = 1` MKL's matrix-vector product reads the weight at about
// half the memory bandwidth here; this kernel streams it at nearly all of it.
char* llms_linear_few_rows(at::Tensor* input, at::Tensor* weight, at::Tensor* bias, at::Tensor** out) {
  return guarded([&] {
    const at::Tensor& x = *input;
    const at::Tensor& w = *weight;
    bool gradient = at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() ||
                                                   (bias && bias->requires_grad()));
    bool fits = x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1) && x.device().is_cpu() &&
                w.device().is_cpu() && x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat &&
                w.is_contiguous();
    if (gradient || !fits || !has_avx2_fma()) {
      *out = new at::Tensor(at::linear(x, w, bias ? c10::optional<at::Tensor>(*bias) : c10::nullopt));
      return;
    }
    at::Tensor xc = x.contiguous();
    int64_t m = xc.size(0), k = xc.size(1), n = w.size(0);
    at::Tensor y = at::empty({m, n}, xc.options());
    const float* xp = xc.data_ptr<float>();
    const float* wp = w.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    // Blocks of 4 weight rows; about 64 KB of weight per task at the least.
    int64_t blocks = (n + 3) / 4;
    int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, 4 * k));
    at::parallel_for(0, blocks, grain, [&](int64_t begin, int64_t end) {
      rows_times_weight_avx2(xp, m, wp, k, yp, n, begin * 4, std::min(end * 4, n));
    });
    if (bias) y.add_(*bias);
    *out = new at::Tensor(std::move(y));
  });
}

char* llms_set_cuda_autocast_bfloat16() {
  return guarded([] { at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16); });
}

// Lets cuBLAS compute float32 matrix products with TF32 tensor cores
// (`torch.backends.cuda.matmul.allow_tf32`); `*was` receives the previous setting.
char* llms_set_tf32_matmul(bool allow, bool* was) {
  return guarded([&] {
    *was = at::globalContext().allowTF32CuBLAS();
    at::globalContext().setAllowTF32CuBLAS(allow);
  });
}

// Turns the CPU's bfloat16 autocast on (entering) or off (leaving, which also drops the casts
// it cached), as `torch.autocast("cpu", torch.bfloat16)` does.
char* llms_cpu_autocast(bool enter) {
  return guarded([&] {
    if (enter) {
      at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
      at::autocast::set_autocast_enabled(at::kCPU, true);
      at::autocast::increment_nesting();
    } else {
      at::autocast::set_autocast_enabled(at::kCPU, false);
      if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    }
  });
}

}  // extern "C"
