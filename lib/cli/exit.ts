// Exiting only once the native worker thread has let go of Node.
//
// Each native job ends, on the addon's worker thread, with `BlockingCall` (which
// hands the result to JS) and then `Release` of the thread-safe function
// (native/addon.cpp, submit_job). The result can settle and the command finish
// before the worker reaches `Release`; if the process tears Node down in that
// gap, `Release` locks a destroyed libuv mutex and the process aborts (SIGABRT,
// exit status 134, about 1 run in 20 here) after having done its work. Until
// the addon releases before delivering, the CLI waits a moment before exiting.

const SETTLE_MS = 50;

export function settleNativeJobs(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
}
