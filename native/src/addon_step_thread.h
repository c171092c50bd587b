// One OS thread per model for its heavy calls (forward, trainForward, trainBackward, step),
// settling each call's Promise on the JS thread through a thread-safe function.
//
// Why not libuv's pool (Napi::AsyncWorker): it hands consecutive calls to whichever of its
// threads a wake-up reaches, so a decode step's rank 0 was a different OS thread nearly every
// step, and on two cores the scheduler often put it beside the pool's spinning worker until it
// moved one of them. 110M f32 decode at batch 1 read 80–117 tok/s and bf16 183–227; the same
// steps always on one thread read 127–131 and 237–256 (RESULTS.md, "One thread per model").
// llama.cpp's server and vLLM's engine loop likewise run every step on one thread.
#pragma once
#include <napi.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "errors.h"
#include "model.h"

namespace hc::addon {

class StepThread;

// One heavy call: `work` on the model's thread with the busy flag held, then the Promise
// settled with `done`'s value (or the error `work` threw) on the JS thread.
class StepJob {
 public:
  StepJob(Napi::Env env, std::shared_ptr<hc::Model> model, std::shared_ptr<std::atomic<bool>> busy,
          std::function<void(hc::Model&)> work, std::function<Napi::Value(Napi::Env)> done)
      : deferred_(Napi::Promise::Deferred::New(env)),
        model_(std::move(model)),
        busy_(std::move(busy)),
        work_(std::move(work)),
        done_(std::move(done)) {}
  Napi::Promise promise() const { return deferred_.Promise(); }

 private:
  friend class StepThread;
  void run();                 // the model's thread
  void settle(Napi::Env env);  // the JS thread

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<hc::Model> model_;  // keeps the weights mapped even if dispose() runs meanwhile
  std::shared_ptr<std::atomic<bool>> busy_;
  std::function<void(hc::Model&)> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::optional<hc::Failure> failure_;  // what work_ threw
  std::shared_ptr<int> pending_;  // the thread's count of posted, unsettled jobs (JS thread only)
  napi_threadsafe_function tsfn_ = nullptr;
};

class StepThread {
 public:
  explicit StepThread(Napi::Env env);
  // Stops the thread once it has run every posted job; their Promises still settle.
  ~StepThread();
  StepThread(const StepThread&) = delete;
  StepThread& operator=(const StepThread&) = delete;

  // JS thread: queues the job; its Promise keeps the event loop alive until it settles.
  void post(Napi::Env env, std::unique_ptr<StepJob> job);
  // JS thread: the thread ends once its queue is empty (dispose()); no job may follow.
  void stop();

 private:
  // The thread and its queue. They belong to the thread-safe function's finalizer, which joins
  // the thread and frees them: it runs once the thread has released the function on its way out,
  // or when the environment shuts down, whichever comes first, and possibly before or after
  // ~StepThread (the wrapper's own finalizer).
  struct Core {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<StepJob*> queue;
    bool stop = false;
    std::thread thread;
    std::shared_ptr<bool> gone = std::make_shared<bool>(false);  // set by the finalizer
  };
  static void call_js(Napi::Env env, Napi::Function, Core*, StepJob* job);
  static void finalize(Napi::Env, Core* core, Core*);
  using Tsfn = Napi::TypedThreadSafeFunction<Core, StepJob, &StepThread::call_js>;
  static void loop(Core* core, Tsfn tsfn);
  static void stop(Core* core);

  Core* core_;
  std::shared_ptr<bool> gone_;  // core_ freed: the JS thread only
  std::shared_ptr<int> pending_ = std::make_shared<int>(0);
  Tsfn tsfn_;
};

}  // namespace hc::addon
