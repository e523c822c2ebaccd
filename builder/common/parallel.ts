/** Small schedulers for async work: bounded parallelism, throttled progress, serialised writes. */

/**
 * Runs `fn` over items with at most `limit` at a time. After the first failure no new item starts,
 * but the running ones are awaited, so each removes its own unfinished files before the caller
 * reports that first failure and exits.
 */
export async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length && !failure) {
      const item = items[next++] as T;
      await fn(item).catch((error: unknown) => {
        failure ??= { error };
      });
    }
  });
  await Promise.all(workers);
  if (failure) throw failure.error;
}

/** Calls `fn` at most every `ms` milliseconds (progress events from a byte stream). */
export function throttled<T>(fn: (value: T) => void, ms = 200): (value: T) => void {
  let last = 0;
  return (value) => {
    const now = Date.now();
    if (now - last < ms) return;
    last = now;
    fn(value);
  };
}

/** Wraps an async function so calls run one after another (manifest writes from parallel nodes). */
export function serialised(fn: () => Promise<void>): () => Promise<void> {
  let chain: Promise<void> = Promise.resolve();
  return () => {
    chain = chain.then(fn, fn);
    return chain;
  };
}
