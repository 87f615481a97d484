// Ctrl-C during training: the first stops the run after the current step, with
// a checkpoint (the run loop watches the signal); a second quits at once (the
// default SIGINT behaviour, restored and raised again: no process.exit here).

export interface Interrupt {
  signal: AbortSignal;
  /** Stops listening for Ctrl-C (the default behaviour returns). */
  release(): void;
}

export function interruptOnCtrlC(): Interrupt {
  const abort = new AbortController();
  const onSigint = () => {
    if (abort.signal.aborted) {
      process.off('SIGINT', onSigint);
      process.kill(process.pid, 'SIGINT');
      return;
    }
    abort.abort();
    process.stderr.write('\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', onSigint);
  return { signal: abort.signal, release: () => process.off('SIGINT', onSigint) };
}
