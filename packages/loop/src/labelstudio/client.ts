import { RatchetError } from '@ratchet/core';
import { z } from 'zod';

/**
 * A small client for the parts of Label Studio's REST API the connector needs. Both kinds of
 * API key work: a legacy token is sent as `Authorization: Token <key>`; a personal access token
 * (a JWT refresh token, the default since Label Studio 1.17) is exchanged at `/api/token/refresh/`
 * for a short-lived access token sent as `Bearer`, renewed when the server answers 401.
 */
export interface LabelStudioClientOptions {
  /** Base URL, e.g. `http://localhost:8080`. */
  url: string;
  apiKey: string;
  fetch?: typeof fetch;
  /** Per request; exports of large projects take a while. */
  timeoutMs?: number;
}

export const LabelStudioProject = z.looseObject({ id: z.number().int(), title: z.string().nullish() });
export type LabelStudioProject = z.infer<typeof LabelStudioProject>;

const TaskPage = z.looseObject({
  total: z.number().int().nonnegative(),
  tasks: z.array(z.looseObject({ id: z.number().int(), data: z.record(z.string(), z.unknown()) })),
});
export type LabelStudioTaskData = z.infer<typeof TaskPage>['tasks'][number];

const User = z.looseObject({ id: z.number().int(), email: z.string().nullish() });
export type LabelStudioUser = z.infer<typeof User>;

/** A result item as Label Studio stores it: which control, on which object, with what value. */
export interface LabelStudioResultInput {
  from_name: string;
  to_name: string;
  type: string;
  value: Record<string, unknown>;
}

const PAGE_SIZE = 100;

const isJwt = (key: string) => /^eyJ[\w-]*\.[\w-]+\.[\w-]+$/.test(key);

export class LabelStudioClient {
  private readonly base: string;
  private readonly fetchFn: typeof fetch;
  private accessToken: string | undefined;

  constructor(private readonly options: LabelStudioClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.fetchFn = options.fetch ?? fetch;
  }

  whoami(): Promise<LabelStudioUser> {
    return this.request(User, 'GET', '/api/current-user/whoami');
  }

  createProject(project: {
    title: string;
    description?: string;
    labelConfig: string;
  }): Promise<LabelStudioProject> {
    return this.request(LabelStudioProject, 'POST', '/api/projects/', {
      title: project.title,
      description: project.description ?? '',
      label_config: project.labelConfig,
    });
  }

  getProject(projectId: number): Promise<LabelStudioProject> {
    return this.request(LabelStudioProject, 'GET', `/api/projects/${projectId}/`);
  }

  /** Creates tasks; returns how many Label Studio made. */
  async importTasks(projectId: number, tasks: readonly { data: Record<string, unknown> }[]): Promise<number> {
    const response = await this.request(
      z.looseObject({ task_count: z.number().int() }),
      'POST',
      `/api/projects/${projectId}/import`,
      tasks,
    );
    return response.task_count;
  }

  /** Every task of a project with its data (not its annotations), page by page. */
  async listTasks(projectId: number): Promise<LabelStudioTaskData[]> {
    const tasks: LabelStudioTaskData[] = [];
    for (let page = 1; ; page++) {
      const query = new URLSearchParams({
        project: String(projectId),
        page: String(page),
        page_size: String(PAGE_SIZE),
      });
      const result = await this.request(TaskPage, 'GET', `/api/tasks/?${query}`);
      tasks.push(...result.tasks);
      if (result.tasks.length === 0 || tasks.length >= result.total) return tasks;
    }
  }

  /**
   * A JSON export: tasks with their annotations, by default only the tasks that have one. The
   * items are validated by the importer that reads them (`labelstudio/results.ts`).
   */
  exportTasks(projectId: number, options: { allTasks?: boolean } = {}): Promise<unknown[]> {
    const query = new URLSearchParams({
      exportType: 'JSON',
      download_all_tasks: String(options.allTasks ?? false),
    });
    return this.request(z.array(z.unknown()), 'GET', `/api/projects/${projectId}/export?${query}`);
  }

  /** Saves an annotation, as the labeling UI does when an annotator submits. */
  createAnnotation(
    taskId: number,
    annotation: { result: LabelStudioResultInput[]; completedBy?: number },
  ): Promise<{ id: number }> {
    return this.request(
      z.looseObject({ id: z.number().int() }),
      'POST',
      `/api/tasks/${taskId}/annotations/`,
      {
        result: annotation.result,
        ...(annotation.completedBy !== undefined ? { completed_by: annotation.completedBy } : {}),
      },
    );
  }

  /** Adds a user to the organization (needs an administrator's key). */
  createUser(user: { email: string; username?: string }): Promise<LabelStudioUser> {
    return this.request(User, 'POST', '/api/users/', {
      email: user.email,
      username: user.username ?? user.email,
    });
  }

  /** Makes a personal access token for the current user. */
  async createPersonalAccessToken(): Promise<string> {
    return (await this.request(z.looseObject({ token: z.string() }), 'POST', '/api/token/')).token;
  }

  async request<S extends z.ZodType>(
    schema: S,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<z.output<S>> {
    let response = await this.send(method, path, body, false);
    if (response.status === 401 && isJwt(this.options.apiKey))
      response = await this.send(method, path, body, true);
    const text = await response.text();
    if (!response.ok) throw upstreamError(method, path, `HTTP ${response.status}: ${errorDetail(text)}`);
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      throw upstreamError(method, path, `answered with something that is not JSON: ${text.slice(0, 200)}`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success)
      throw upstreamError(
        method,
        path,
        `unexpected answer (${parsed.error.issues[0]?.message ?? 'invalid'})`,
      );
    return parsed.data;
  }

  private async send(method: string, path: string, body: unknown, renew: boolean): Promise<Response> {
    const headers: Record<string, string> = {
      Authorization: await this.authorization(renew),
      Accept: 'application/json',
    };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    try {
      return await this.fetchFn(`${this.base}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 120_000),
      });
    } catch (err) {
      throw upstreamError(method, path, `cannot reach ${this.base} (${(err as Error).message})`);
    }
  }

  private async authorization(renew: boolean): Promise<string> {
    const key = this.options.apiKey;
    if (!isJwt(key)) return `Token ${key}`;
    if (renew || this.accessToken === undefined) this.accessToken = await this.refreshAccessToken(key);
    return `Bearer ${this.accessToken}`;
  }

  private async refreshAccessToken(refresh: string): Promise<string> {
    const path = '/api/token/refresh/';
    const response = await this.fetchFn(`${this.base}${path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ refresh }),
      signal: AbortSignal.timeout(this.options.timeoutMs ?? 120_000),
    }).catch((err: Error) => {
      throw upstreamError('POST', path, `cannot reach ${this.base} (${err.message})`);
    });
    const text = await response.text();
    if (!response.ok)
      throw upstreamError(
        'POST',
        path,
        `the personal access token was refused: HTTP ${response.status}: ${errorDetail(text)}`,
      );
    const parsed = z.object({ access: z.string().min(1) }).safeParse(JSON.parse(text));
    if (!parsed.success) throw upstreamError('POST', path, 'answered without an access token');
    return parsed.data.access;
  }
}

function upstreamError(method: string, path: string, message: string): RatchetError {
  return new RatchetError('upstream_error', `Label Studio ${method} ${path.split('?')[0]}: ${message}`);
}

/** Label Studio's error bodies carry `detail` and, for bad input, `validation_errors`. */
function errorDetail(text: string): string {
  try {
    const body = JSON.parse(text) as { detail?: unknown; validation_errors?: unknown };
    const detail = typeof body.detail === 'string' ? body.detail : '';
    const fields = body.validation_errors ? ` ${JSON.stringify(body.validation_errors)}` : '';
    if (detail || fields) return `${detail}${fields}`.slice(0, 1000);
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.slice(0, 300);
}
