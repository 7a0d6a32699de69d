import { useCallback, useEffect, useState } from 'react';
import { ApiError, api } from './api.js';

export interface Loaded<T> {
  data: T | undefined;
  error: string | undefined;
  /** The endpoint is not there (yet): another part of Ratchet adds it. */
  missing: boolean;
  loading: boolean;
  reload: () => void;
  /** A background report not computed yet (see useReport). */
  computing?: boolean;
  /** When the report shown was computed. */
  computedAt?: number | null;
}

interface CachedReport<T> {
  report: T | null;
  computedAt: number | null;
  fresh: boolean;
  computing: boolean;
}

/** A report the server computes in the background: polls until the newest one is there. */
export function useReport<T>(path: string): Loaded<T> {
  const [poll, setPoll] = useState<number | undefined>();
  const state = useApi<CachedReport<T>>(path, poll);
  const computing = state.data?.computing ?? false;
  useEffect(() => setPoll(computing ? 1500 : undefined), [computing]);
  return {
    ...state,
    data: state.data?.report ?? undefined,
    computing,
    computedAt: state.data?.computedAt ?? null,
  };
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
