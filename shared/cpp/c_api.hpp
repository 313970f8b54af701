// What the C interfaces (`native.cpp`, `distributed.cpp`) share: a function's C++ exception
// becomes a message for Rust (NULL on success), which Rust frees with `llms_free_message`;
// tensors arrive as arrays of pointers.

#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

namespace llms {

inline char* message(const char* text) { return strdup(text); }

template <typename F>
char* guarded(F&& f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return message(e.what());
  } catch (...) {
    return message("unknown C++ exception");
  }
}

inline std::vector<at::Tensor> tensors(at::Tensor** items, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*items[i]);
  return out;
}

}  // namespace llms
