#include "executor.h"

#include "nvtx_ops.h"

namespace roformer::js {

Executor& Executor::instance() {
  // Never destroyed: the thread waits for work until the process exits, and a
  // static std::thread joined at exit could block exit behind a running step.
  static Executor* executor = new Executor();
  return *executor;
}

void Executor::submit(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back(std::move(job));
    if (!started_) {
      started_ = true;
      std::thread thread([this] { run(); });
      thread_id_ = thread.get_id();
      thread.detach();
    }
  }
  ready_.notify_one();
}

void Executor::run() {
  enable_nvtx_op_ranges_if_asked();
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait(lock, [this] { return !jobs_.empty(); });
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace roformer::js
