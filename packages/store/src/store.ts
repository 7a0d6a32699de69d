import { type Kysely, Migrator, sql } from 'kysely';
import { AccountRepository } from './accounts.js';
import { AnalysisRepository } from './analysis.js';
import { AnnotationRepository } from './annotation.js';
import { AuditLog } from './audit.js';
import { CalibrationRepository } from './calibration.js';
import {
  type DatabaseConfig,
  type DialectName,
  type OpenedDatabase,
  openDatabase,
  parseDatabaseUrl,
} from './connection.js';
import { DashboardRepository } from './dashboard.js';
import { DatasetRepository } from './datasets.js';
import { DeadLetterRepository } from './dead-letters.js';
import { DeletionRepository } from './deletion.js';
import { EvaluationRepository } from './evaluations.js';
import { ExperimentRepository } from './experiments.js';
import { FeedbackRepository } from './feedback.js';
import { DirectTransactions, GroupCommit, type WriteWork } from './group-commit.js';
import { InteractionRepository } from './interactions.js';
import { RateWindowRepository, RoundLeaseRepository } from './leases.js';
import { LoopRoundRepository } from './loops.js';
import { migrations } from './migrations.js';
import { ModelRepository } from './models.js';
import { PartitionRepository } from './partitions.js';
import { ProjectRepository } from './projects.js';
import { RaterRepository } from './raters.js';
import { ResponseLinkRepository } from './response-links.js';
import { RollupRepository } from './rollups.js';
import { GatewayRouteRepository } from './routes.js';
import { RunRepository } from './runs.js';
import type { Database } from './schema.js';
import { ScoreConfigRepository } from './score-configs.js';
import { UsageRecordRepository } from './usage-records.js';
import { WatchRepository } from './watches.js';

/**
 * The store: one object per database, with a repository per noun. The same code runs on SQLite
 * (embedded default) and PostgreSQL; where SQL must differ it is chosen by `dialect`.
 */
export class Store {
  readonly projects: ProjectRepository;
  readonly accounts: AccountRepository;
  readonly interactions: InteractionRepository;
  readonly feedback: FeedbackRepository;
  readonly scoreConfigs: ScoreConfigRepository;
  readonly raters: RaterRepository;
  readonly calibration: CalibrationRepository;
  readonly datasets: DatasetRepository;
  readonly analysis: AnalysisRepository;
  readonly audit: AuditLog;
  readonly models: ModelRepository;
  readonly dashboard: DashboardRepository;
  readonly rollups: RollupRepository;
  readonly runs: RunRepository;
  readonly evaluations: EvaluationRepository;
  readonly routes: GatewayRouteRepository;
  readonly experiments: ExperimentRepository;
  readonly watches: WatchRepository;
  readonly loops: LoopRoundRepository;
  readonly deadLetters: DeadLetterRepository;
  readonly usage: UsageRecordRepository;
  readonly responseLinks: ResponseLinkRepository;
  readonly deletion: DeletionRepository;
  readonly leases: RoundLeaseRepository;
  readonly rateWindows: RateWindowRepository;
  readonly annotation: AnnotationRepository;
  readonly partitions: PartitionRepository;

  readonly db: Kysely<Database>;

  private constructor(
    opened: OpenedDatabase,
    /** What it was opened with, so that a worker thread can open its own connection to it. */
    readonly config: DatabaseConfig,
    readonly dialect: DialectName,
    /** SQLite's durability setting for ordinary writes, restored after a relaxed write. */
    private readonly synchronous: 'FULL' | 'NORMAL' = 'FULL',
    /** Migrations left out until `migrate()` (a migration's test populates the database before it). */
    private readonly withheld: readonly string[] = [],
  ) {
    const db = opened.db;
    this.db = db;
    // SQLite has one writer: concurrent capture writes share commits (see group-commit.ts).
    const writes = opened.sqlite
      ? new GroupCommit(db, { walSync: opened.walSync })
      : new DirectTransactions(db);
    // Rollups are derived from rows already durable: their commits need not wait for the disk.
    this.rollups = new RollupRepository(db, dialect, opened.readThread, (work) => this.writeRelaxed(work));
    this.interactions = new InteractionRepository(db, dialect, writes, opened.sqlite, this.rollups, {
      ...(opened.writeThread ? { thread: opened.writeThread } : {}),
      relaxed: (work) => this.writeRelaxed(work),
    });
    this.scoreConfigs = new ScoreConfigRepository(db, dialect);
    this.feedback = new FeedbackRepository(
      db,
      dialect,
      this.interactions,
      this.scoreConfigs,
      writes,
      this.rollups,
      opened.sqlite,
    );
    this.raters = new RaterRepository(db);
    this.calibration = new CalibrationRepository(db, dialect, opened.sqlite);
    this.datasets = new DatasetRepository(db, dialect, opened.sqlite);
    this.analysis = new AnalysisRepository(db, dialect);
    this.audit = new AuditLog(db, dialect);
    this.projects = new ProjectRepository(db, dialect, config, this.audit);
    this.accounts = new AccountRepository(db, this.audit);
    this.routes = new GatewayRouteRepository(db, dialect, config);
    this.experiments = new ExperimentRepository(db, dialect, this.routes, this.audit);
    this.watches = new WatchRepository(db, dialect, this.audit, this.routes, this.experiments);
    this.models = new ModelRepository(db, dialect, this.audit, this.routes, this.watches);
    this.dashboard = new DashboardRepository(db, this.rollups);
    this.runs = new RunRepository(db, dialect);
    this.evaluations = new EvaluationRepository(db, dialect, this.audit);
    this.loops = new LoopRoundRepository(db, dialect, this.audit);
    this.deadLetters = new DeadLetterRepository(db);
    this.usage = new UsageRecordRepository(db);
    this.deletion = new DeletionRepository(db, dialect, this.audit, this.rollups);
    this.responseLinks = new ResponseLinkRepository(db);
    this.leases = new RoundLeaseRepository(db);
    this.rateWindows = new RateWindowRepository(db);
    this.annotation = new AnnotationRepository(db, dialect, this.feedback, this.audit);
    this.partitions = new PartitionRepository(db, dialect);
  }

  /** Opens (and migrates) the database named by a URL, by default `RATCHET_DATABASE_URL`. */
  static async open(
    url: string | DatabaseConfig = process.env.RATCHET_DATABASE_URL ?? undefined!,
    options: { withholdMigrations?: readonly string[] } = {},
  ): Promise<Store> {
    const config = typeof url === 'object' ? url : parseDatabaseUrl(url);
    const store = new Store(
      openDatabase(config),
      config,
      config.dialect,
      config.dialect === 'sqlite' && config.synchronous === 'normal' ? 'NORMAL' : 'FULL',
      options.withholdMigrations,
    );
    try {
      await store.migrate(store.withheld);
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  /** Runs every migration not run yet (but those in `withholding`). */
  async migrate(withholding: readonly string[] = []): Promise<void> {
    const { error } = await this.migrator(withholding).migrateToLatest();
    if (error) throw error instanceof Error ? error : new Error(String(error));
  }

  /**
   * The migrations this code knows that the database has not run (a server of a newer version
   * started beside older ones before migrating, or the database was restored): `/readyz` says so.
   */
  async pendingMigrations(): Promise<string[]> {
    const known = await this.migrator().getMigrations();
    return known.filter((m) => m.executedAt === undefined).map((m) => m.name);
  }

  private migrator(withholding: readonly string[] = []): Migrator {
    const dialect = this.dialect;
    const known = () =>
      Object.fromEntries(Object.entries(migrations(dialect)).filter(([name]) => !withholding.includes(name)));
    return new Migrator({
      db: this.db,
      provider: { getMigrations: async () => known() },
      migrationTableName: 'ratchet_migrations',
      migrationLockTableName: 'ratchet_migrations_lock',
      // Numbers are handed out to parallel work, so a database may have run a later one (0019)
      // before an earlier one (0017) lands; they touch different tables, so order is free.
      allowUnorderedMigrations: true,
    });
  }

  /**
   * A transaction that commits without waiting for the disk: for data that was only in memory a
   * moment before anyway (the gateway's interaction log, written after the call was answered).
   * It survives a crash of the process, not necessarily of the machine. SQLite (WAL): this
   * transaction runs with synchronous=NORMAL, so its commit does not fsync; PostgreSQL:
   * synchronous_commit=off for this transaction only.
   */
  async writeRelaxed<T>(work: WriteWork<T>): Promise<T> {
    if (this.dialect === 'postgres')
      return this.db.transaction().execute(async (trx) => {
        await sql`set local synchronous_commit = off`.execute(trx);
        return work(trx);
      });
    return this.db.connection().execute(async (conn) => {
      await sql`pragma synchronous = NORMAL`.execute(conn);
      try {
        return await conn.transaction().execute(work);
      } finally {
        await sql.raw(`pragma synchronous = ${this.synchronous}`).execute(conn);
      }
    });
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}
