import { type FileHandle, open } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Makes a WAL database's committed transactions durable off the event loop. With
 * `synchronous=FULL`, SQLite fsyncs the WAL inside COMMIT, and better-sqlite3 runs COMMIT on the
 * event loop: at ingest rates the process spent a fifth of its time waiting for the disk with no
 * request being parsed. Group commits instead commit with `synchronous=NORMAL` (the frames are in
 * the WAL file, safe from a crash of the process) and then call `sync()`, which fdatasyncs the
 * WAL file on libuv's thread pool; they acknowledge their writes only once that returned, so an
 * acknowledged write survives a power loss exactly as with FULL. Calls that arrive while an
 * fsync runs share the next one, which starts when it returns (it covers all of them).
 *
 * Checkpoints stay safe: SQLite syncs the WAL before it copies frames into the database file.
 */
export class WalSync {
  private inFlight: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  private directorySynced = false;

  constructor(private readonly databaseFile: string) {}

  /** Resolves once everything committed before this call is on disk. */
  sync(): Promise<void> {
    if (!this.inFlight) {
      this.inFlight = this.fsync().finally(() => {
        this.inFlight = undefined;
      });
      return this.inFlight;
    }
    // The fsync in flight may have started before the caller's commit: wait for the next one.
    this.next ??= this.inFlight
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        return this.sync();
      });
    return this.next;
  }

  private async fsync(): Promise<void> {
    // Opened per sync, so a WAL file that was removed and made anew is never missed.
    let wal: FileHandle;
    try {
      wal = await open(`${this.databaseFile}-wal`, 'r');
    } catch (err) {
      // No WAL: the last connection closed, which copied it into the database file and synced
      // that (the store closed while this sync was on its way).
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    try {
      await wal.datasync();
    } finally {
      await wal.close();
    }
    if (!this.directorySynced) {
      // FULL would also have synced the directory entry of a newly made WAL file once.
      const dir = await open(dirname(this.databaseFile), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
      this.directorySynced = true;
    }
  }
}
