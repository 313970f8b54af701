// What the c10d backends' constructors (`distributed.cpp` for Gloo, `distributed_nccl.cpp`
// for NCCL) share: the group handed to Rust, and joining the TCP store.

#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <string>

namespace llms {

// A backend with the store it rendezvoused through and the timeout of its collectives.
struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

// Rank 0 serves the store at addr:port, the others connect; all wait at most `timeout`
// for the whole group to arrive.
inline c10::intrusive_ptr<c10d::Store> join_store(const char* addr, int port, int rank, int world_size,
                                                  std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(port);
  options.isServer = rank == 0;
  options.numWorkers = world_size;
  options.waitWorkers = true;
  options.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(std::string(addr), options);
}

}  // namespace llms
