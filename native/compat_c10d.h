// libtorch 1.13 vs 2.x differences in c10d, kept apart from compat.h so that only
// distributed.cpp pays for these headers.
//
//   1.13: ProcessGroupGloo derives from c10d::ProcessGroup; collectives return
//         intrusive_ptr<ProcessGroup::Work>.
//   2.x:  backends (ProcessGroupGloo, ProcessGroupNCCL) derive from c10d::Backend,
//         which ProcessGroup wraps; collectives return intrusive_ptr<c10d::Work>.
//
// The code talks to the backend directly through `CommGroup` and names the work
// handle `WorkPtr`, so it reads the same for both.
#pragma once

#include <torch/version.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif

// Gloo: its headers (Debian: libgloo-dev; pip's torch ships them) are needed to use
// the ProcessGroupGloo class; without them the addon builds, and Gloo is refused at run time.
// CMakeLists.txt looks for them at every configure and defines ROFORMER_WITH_GLOO (a
// definition, unlike __has_include, makes a changed answer recompile this file).
#ifdef ROFORMER_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#define ROFORMER_HAS_GLOO 1
#endif

// NCCL: CUDA builds of libtorch 2.x (CMakeLists.txt defines ROFORMER_WITH_NCCL and
// USE_C10D_NCCL when libtorch has CUDA and the header exists).
#if defined(ROFORMER_WITH_NCCL) && TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define ROFORMER_HAS_NCCL 1
#endif

namespace roformer::compat {

#if TORCH_VERSION_MAJOR >= 2
using CommGroup = c10d::Backend;
#else
using CommGroup = c10d::ProcessGroup;
#endif
using WorkPtr = decltype(std::declval<CommGroup&>().barrier());

// The rendezvous store's options. From libtorch 2.4 TCPStore defaults to its libuv
// backend, and a libtorch built without libuv (Debian's 2.6) refuses it ("use_libuv was
// requested but PyTorch was build without libuv support"); the plain socket store works
// on every version and serves the few keys a rendezvous needs.
inline c10d::TCPStoreOptions tcp_store_options() {
  c10d::TCPStoreOptions options;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  options.useLibUV = false;
#endif
  return options;
}

}  // namespace roformer::compat
