/**
 * Preloaded (node --expose-gc --import) into the sidecar for memory runs only: SIGUSR2 runs a full GC, so RSS
 * can be read without the garbage a connect storm leaves behind.
 */
process.on('SIGUSR2', () => {
  (globalThis as { gc?: () => void }).gc?.();
});
