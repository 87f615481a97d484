// The addon's one executor thread: every heavy call (steps, evaluations, forward
// passes) runs here, one job at a time, in the order JS submitted them.
//
// Why one thread and not libuv's pool: glibc gives each thread that allocates its
// own malloc arena and keeps that arena's peak, so spreading steps over the four
// pool threads held up to four copies of a step's peak activations (issue 12:
// 8.6 GB instead of 2.5 GB at length 512). libtorch also keeps the current CUDA
// stream, autocast and grad mode per thread, and CUDA graphs are captured and
// replayed on one thread: one owner thread for all of it is what CUDA wants too.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace roformer::js {

class Executor {
 public:
  // The process-wide executor (shared by every Node environment that loads the
  // addon, worker threads included); its thread starts on the first submit.
  static Executor& instance();

  // Queues `job` behind every job submitted before it. Jobs must not throw.
  void submit(std::function<void()> job);

  // True on the executor's own thread (a job that submits and waits would deadlock).
  bool on_executor_thread() const { return std::this_thread::get_id() == thread_id_; }

 private:
  Executor() = default;
  void run();

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
  bool started_ = false;
  std::thread::id thread_id_;
};

}  // namespace roformer::js
