// A small C interface to LibTorch's own distributed engine, c10d (`shared::distributed`):
// a TCP store for the rendezvous, the Gloo backend for CPU tensors, and the collectives
// data parallelism needs (all-reduce, broadcast, barrier). Compiled only when Gloo's
// headers are found (Debian's libgloo-dev; LibTorch's wheel ships c10d's headers but not
// Gloo's, which ProcessGroupGloo.hpp includes); the symbols themselves are in
// libtorch_cpu. Errors, timeouts and a peer that went away come back as messages (NULL on
// success), which the caller frees with `llms_free_message`.

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "c_api.hpp"
#include "distributed.hpp"
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

using llms::Group;
using llms::guarded;
using llms::tensors;


void wait(const c10::intrusive_ptr<c10d::Work>& work, std::chrono::milliseconds timeout) {
  if (!work->wait(timeout)) throw std::runtime_error("a collective operation did not complete");
}

}  // namespace

extern "C" {

// Joins the group: rank 0 serves the TCP store at addr:port, the others connect to it; all
// wait at most timeout_ms for each other (and later for every collective).
char* llms_gloo_group_new(const char* addr, int port, int rank, int world_size, int64_t timeout_ms, void** out) {
  return guarded([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto store = llms::join_store(addr, port, rank, world_size, timeout);
    auto gloo_options = c10d::ProcessGroupGloo::Options::create_default(timeout);
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, gloo_options);
    *out = new Group{store, backend, timeout};
  });
}

void llms_group_free(void* group) { delete static_cast<Group*>(group); }

// Sums each tensor over the group, in place.
char* llms_group_all_reduce_sum(void* group, at::Tensor** items, size_t n) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    auto list = tensors(items, n);
    for (auto& tensor : list) {
      std::vector<at::Tensor> one{tensor};
      c10d::AllreduceOptions options;
      options.reduceOp = c10d::ReduceOp::SUM;
      options.timeout = g->timeout;
      wait(g->backend->allreduce(one, options), g->timeout);
    }
  });
}

// Copies root's tensors to every rank, in place.
char* llms_group_broadcast(void* group, at::Tensor** items, size_t n, int root) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    auto list = tensors(items, n);
    for (auto& tensor : list) {
      std::vector<at::Tensor> one{tensor};
      c10d::BroadcastOptions options;
      options.rootRank = root;
      options.timeout = g->timeout;
      wait(g->backend->broadcast(one, options), g->timeout);
    }
  });
}

char* llms_group_barrier(void* group) {
  return guarded([&] {
    auto* g = static_cast<Group*>(group);
    c10d::BarrierOptions options;
    options.timeout = g->timeout;
    wait(g->backend->barrier(options), g->timeout);
  });
}

}  // extern "C"
