// A TEST DOUBLE of a vLLM server started with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and
// --enable-lora: vLLM needs a GPU and cannot run on the CPU machines the tests run on. It follows
// vLLM's documented API (docs/features/lora.md, entrypoints/openai/serving_models.py):
//   GET  /v1/models               the base's served names (parent null) and each loaded LoRA
//                                 (root: its lora_path, parent: the base)
//   POST /v1/load_lora_adapter    {lora_name, lora_path}: 200 with a text body; 400
//                                 InvalidUserInput for a missing field or a name already loaded;
//                                 404 NotFoundError when no adapter is at lora_path; 400
//                                 BadRequestError when the engine refuses it (rank > max_lora_rank)
//   POST /v1/unload_lora_adapter  {lora_name}: 200, or 404 NotFoundError for a name not loaded
//   POST /v1/chat/completions     answers with the model's name; 404 for a model it does not serve
// Errors have vLLM's shape {error: {message, type, param, code}}. Without runtime LoRA the two
// LoRA routes do not exist and FastAPI answers 404 {"detail": "Not Found"}. lora_path is read
// the way the server sees its file system: through `mounts` (server path -> local folder).
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface VllmDoubleOptions {
  /** `--served-model-name`s of the base model. */
  servedNames: string[];
  /** Server path prefix -> the local folder it is (the shared adapter folder's mount). */
  mounts: Record<string, string>;
  runtimeLora?: boolean;
  maxLoraRank?: number;
  /** LoRAs loaded at startup (`--lora-modules name=path`), not by the target. */
  staticLoras?: Record<string, string>;
}

export interface VllmCall {
  method: string;
  path: string;
  body: Record<string, unknown> | undefined;
}

export function vllmDouble(o: VllmDoubleOptions) {
  const loras = new Map<string, string>(Object.entries(o.staticLoras ?? {}));
  const calls: VllmCall[] = [];
  const maxRank = o.maxLoraRank ?? 16;

  const local = (serverPath: string): string | undefined => {
    for (const [prefix, dir] of Object.entries(o.mounts))
      if (serverPath === prefix || serverPath.startsWith(`${prefix}/`))
        return join(dir, serverPath.slice(prefix.length));
    return undefined;
  };
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const error = (res: ServerResponse, status: number, type: string, message: string) =>
    json(res, status, { error: { message, type, param: null, code: status } });

  const load = (res: ServerResponse, body: Record<string, unknown>) => {
    const name = body.lora_name;
    const path = body.lora_path;
    if (typeof name !== 'string' || !name || typeof path !== 'string' || !path)
      return error(res, 400, 'InvalidUserInput', "Both 'lora_name' and 'lora_path' must be provided.");
    if (loras.has(name))
      return error(res, 400, 'InvalidUserInput', `The lora adapter '${name}' has already been loaded.`);
    const dir = local(path);
    const config = dir && join(dir, 'adapter_config.json');
    if (!config || !existsSync(config))
      return error(res, 404, 'NotFoundError', `Loading lora ${name} failed: No adapter found for ${path}`);
    const rank = Number((JSON.parse(readFileSync(config, 'utf8')) as { r?: number }).r ?? 8);
    if (rank > maxRank)
      return error(
        res,
        400,
        'BadRequestError',
        `LoRA rank ${rank} is greater than max_lora_rank ${maxRank}.`,
      );
    loras.set(name, path);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`Success: LoRA adapter '${name}' added successfully.`);
  };
  const unload = (res: ServerResponse, body: Record<string, unknown>) => {
    const name = body.lora_name;
    if (typeof name !== 'string' || !loras.has(name))
      return error(res, 404, 'NotFoundError', `The lora adapter '${String(name)}' cannot be found.`);
    loras.delete(name);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`Success: LoRA adapter '${name}' removed successfully.`);
  };

  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (d) => (text += d));
    req.on('end', () => {
      const body = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
      const path = req.url ?? '';
      calls.push({ method: req.method ?? '', path, body });
      const lora = path === '/v1/load_lora_adapter' || path === '/v1/unload_lora_adapter';
      if (lora && !o.runtimeLora) return json(res, 404, { detail: 'Not Found' });
      if (req.method === 'GET' && path === '/v1/models')
        return json(res, 200, {
          object: 'list',
          data: [
            ...o.servedNames.map((id) => ({
              id,
              object: 'model',
              owned_by: 'vllm',
              root: '/models/base',
              parent: null,
            })),
            ...[...loras].map(([id, root]) => ({
              id,
              object: 'model',
              owned_by: 'vllm',
              root,
              parent: o.servedNames[0],
            })),
          ],
        });
      if (req.method === 'POST' && path === '/v1/load_lora_adapter') return load(res, body ?? {});
      if (req.method === 'POST' && path === '/v1/unload_lora_adapter') return unload(res, body ?? {});
      if (req.method === 'POST' && path === '/v1/chat/completions') {
        const model = String(body?.model);
        if (!o.servedNames.includes(model) && !loras.has(model))
          return error(res, 404, 'NotFoundError', `The model \`${model}\` does not exist.`);
        return json(res, 200, {
          object: 'chat.completion',
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: model }, finish_reason: 'stop' }],
        });
      }
      json(res, 404, { detail: 'Not Found' });
    });
  });

  return {
    calls,
    /** Loaded LoRAs: name -> lora_path as the server saw it. */
    loras,
    start: () =>
      new Promise<string>((resolve) =>
        server.listen(0, '127.0.0.1', () =>
          resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`),
        ),
      ),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
