/**
 * The report thread: computes the dashboard's slow reports on its own connection to the store,
 * so that the server's event loop keeps answering requests meanwhile (SQLite queries are
 * synchronous in better-sqlite3, and theme clustering is seconds of CPU on a large project).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type DatabaseConfig, Store } from '@ratchet/store';
import { type ReportName, reports } from './compute.js';

export interface ReportJob {
  id: number;
  name: ReportName;
  projectId: string;
}

export type ReportAnswer = { id: number; value: unknown } | { id: number; error: string };

const port = parentPort;
if (!port) throw new Error('reports/worker.js runs as a worker thread (see reports/runner.ts)');
const store = await Store.open((workerData as { database: DatabaseConfig }).database);
port.on('message', async (job: ReportJob) => {
  let answer: ReportAnswer;
  try {
    answer = { id: job.id, value: await reports[job.name](store, job.projectId) };
  } catch (err) {
    answer = { id: job.id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  }
  port.postMessage(answer);
});
