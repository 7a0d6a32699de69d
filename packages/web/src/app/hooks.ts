import { useCallback, useEffect, useState } from 'react';
import { ApiError, api } from './api.js';

export interface Loaded<T> {
  data: T | undefined;
  error: string | undefined;
  /** The endpoint is not there (yet): another part of Ratchet adds it. */
  missing: boolean;
  loading: boolean;
  reload: () => void;
}

/** GETs a path; `pollMs` refreshes it (live run progress). */
export function useApi<T>(path: string | null, pollMs?: number): Loaded<T> {
  const [state, setState] = useState<Omit<Loaded<T>, 'reload'>>({
    data: undefined,
    error: undefined,
    missing: false,
    loading: true,
  });
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  // biome-ignore lint/correctness/useExhaustiveDependencies: tick is how reload() asks for a fresh load
  useEffect(() => {
    if (path === null) return;
    let live = true;
    const load = () =>
      api<T>(path).then(
        (data) => live && setState({ data, error: undefined, missing: false, loading: false }),
        (err: unknown) =>
          live &&
          setState((s) => ({
            ...s,
            error: err instanceof Error ? err.message : String(err),
            missing: err instanceof ApiError && err.status === 404,
            loading: false,
          })),
      );
    void load();
    const timer = pollMs ? setInterval(load, pollMs) : undefined;
    return () => {
      live = false;
      if (timer) clearInterval(timer);
    };
  }, [path, pollMs, tick]);
  return { ...state, reload };
}
