#include "addon_step_thread.h"

#include <pthread.h>

#include "addon.h"

namespace hc::addon {

void StepJob::run() {
  try {
    work_(*model_);
  } catch (...) {
    failure_ = hc::current_failure();
  }
}

void StepJob::settle(Napi::Env env) {
  busy_->store(false);
  model_.reset();
  if (--*pending_ == 0) napi_unref_threadsafe_function(env, tsfn_);
  if (failure_) {
    deferred_.Reject(js_error(env, failure_->code, failure_->message).Value());
    return;
  }
  try {
    deferred_.Resolve(done_(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

StepThread::StepThread(Napi::Env env) : core_(new Core), gone_(core_->gone) {
  tsfn_ = Tsfn::New(env, "hybridchat.model", 0, 1, core_, &StepThread::finalize, core_);
  tsfn_.Unref(env);  // referenced only while a job is pending (post / settle)
  core_->thread = std::thread(&StepThread::loop, core_, tsfn_);
#if defined(__linux__)
  // named here, not by the thread itself: the name is there once the model exists (top -H,
  // /proc/PID/task/*/comm), however late the new thread first runs
  pthread_setname_np(core_->thread.native_handle(), "hc-step");
#endif
}

StepThread::~StepThread() {
  if (!*gone_) stop(core_);
}

void StepThread::post(Napi::Env env, std::unique_ptr<StepJob> job) {
  if (*gone_) {  // the environment is shutting down: nothing would run it
    job->busy_->store(false);
    job->deferred_.Reject(js_error(env, "disposed", "the environment is shutting down").Value());
    return;
  }
  job->pending_ = pending_;
  job->tsfn_ = tsfn_;
  if ((*pending_)++ == 0) tsfn_.Ref(env);
  {
    std::lock_guard<std::mutex> lk(core_->mu);
    core_->queue.push_back(job.release());
  }
  core_->cv.notify_one();
}

void StepThread::stop() {
  if (!*gone_) stop(core_);
}

void StepThread::stop(Core* core) {
  {
    std::lock_guard<std::mutex> lk(core->mu);
    core->stop = true;
  }
  core->cv.notify_one();
}

void StepThread::loop(Core* core, Tsfn tsfn) {
  for (;;) {
    StepJob* job = nullptr;
    {
      std::unique_lock<std::mutex> lk(core->mu);
      core->cv.wait(lk, [&] { return core->stop || !core->queue.empty(); });
      if (core->queue.empty()) break;  // stopped, and nothing left to run
      job = core->queue.front();
      core->queue.pop_front();
    }
    job->run();
    // Fails only while the environment shuts down: the job's handles then die with it (not
    // freed here: they belong to the JS thread).
    (void)tsfn.NonBlockingCall(job);
  }
  tsfn.Release();  // the queued calls are still made; then finalize() runs
}

void StepThread::finalize(Napi::Env, Core* core, Core*) {
  stop(core);  // the environment may be shutting down with the thread still waiting
  core->thread.join();
  *core->gone = true;
  delete core;
}

// Also called, with no env, for each call still queued when the environment shuts down.
void StepThread::call_js(Napi::Env env, Napi::Function, Core*, StepJob* job) {
  std::unique_ptr<StepJob> owned(job);
  if (env == nullptr) {
    (void)owned.release();  // its handles died with the environment
    return;
  }
  owned->settle(env);
}

}  // namespace hc::addon
