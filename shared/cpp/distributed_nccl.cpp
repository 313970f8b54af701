// c10d's NCCL backend for CUDA tensors (`shared::distributed`, `Backend::Nccl`): only the
// constructor lives here; the collectives in `distributed.cpp` work on any c10d backend.
// Compiled when the headers are found in the setup's Python environment: NCCL's
// (`nvidia/nccl`), CUDA's (`nvidia/cu13`, with CCCL's from the nvidia-cuda-cccl wheel) and
// `crt/host_config.h` (triton's copy); the symbols are in libtorch_cuda.

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "c_api.hpp"
#include "distributed.hpp"

extern "C" {

// Joins the group as llms_gloo_group_new does, with NCCL on CUDA device `device`.
char* llms_nccl_group_new(const char* addr, int port, int rank, int world_size, int64_t timeout_ms, int device,
                          void** out) {
  return llms::guarded([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto store = llms::join_store(addr, port, rank, world_size, timeout);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    *out = new llms::Group{store, backend, timeout};
  });
}

}  // extern "C"
