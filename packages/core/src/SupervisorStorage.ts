/**
 * Where the Supervisor keeps its children: one row per started process (name, spec, encoded
 * arguments, restart policy) with the fencing state of singletons: an `epoch` incremented on every
 * start, the owning node and the expiry of its lease.
 *
 * Every start of a singleton is a compare-and-set on the epoch (`acquire`), so two nodes can never
 * both believe they started the same epoch; an instance whose epoch is no longer the row's is stale.
 *
 * Two layers:
 * - `layerSql`: a `${prefix}_processes` table (PostgreSQL or SQLite) through the `SqlClient` in context;
 * - `layerMemory(store)`: a store shared by the nodes of one process (TestCluster).
 */
import { RunnerStorage } from "@effect/cluster/RunnerStorage"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { whileStorageAnswers } from "./internal/nodeFate.js"

/** How a child is restarted: always, only after a failure, or never. */
export const RestartPolicy = Schema.Literal("permanent", "transient", "temporary")
/** @see RestartPolicy */
export type RestartPolicy = typeof RestartPolicy.Type

/** A singleton (one instance in the cluster) or a replicated process (one instance per node). */
export const ProcessKind = Schema.Literal("singleton", "replicated")
/** @see ProcessKind */
export type ProcessKind = typeof ProcessKind.Type

/**
 * A supervised process as stored.
 * - `args`: the arguments encoded with the spec's Schema, as JSON;
 * - `epoch`: incremented by every `acquire` (0: never started);
 * - `owner` / `incarnation`: the node (and its `startedAt`) running it, `null` when nobody does;
 * - `leaseExpires`: epoch ms until which the owner may run it without renewing.
 */
export class ProcessRow extends Schema.Class<ProcessRow>("@foundation/ProcessRow")({
  name: Schema.String,
  kind: ProcessKind,
  spec: Schema.String,
  args: Schema.String,
  restart: RestartPolicy,
  epoch: Schema.Number,
  owner: Schema.NullOr(Schema.String),
  incarnation: Schema.NullOr(Schema.Number),
  leaseExpires: Schema.Number,
  createdAt: Schema.Number
}) {}

/** The supervisor's storage failed. Raw equivalent: the `SqlClient` query on `${prefix}_processes`. */
export class SupervisorStorageError extends Schema.TaggedError<SupervisorStorageError>()(
  "SupervisorStorageError",
  { operation: Schema.String, cause: Schema.Defect }
) {
  get message(): string {
    return `Supervisor storage ${this.operation} failed: ${String(this.cause)}`
  }
}

/** Who takes a row in `acquire`. */
export interface Owner {
  readonly node: string
  readonly incarnation: number
  readonly leaseExpires: number
}

/**
 * The storage service:
 * - `create(row)`: inserts the row unless the name exists; returns the existing row if it does;
 * - `get(name)`, `list`: read rows;
 * - `acquire(name, epoch, owner)`: if the row's epoch is still `epoch`, sets `epoch + 1` and the
 *   owner; returns the new row, or `None` if another start came first;
 * - `renew(node, incarnation, leaseExpires)`: extends the lease of every row that node incarnation
 *   owns, and returns those rows (so the owner learns which ones it lost);
 * - `release(name, epoch)`: clears the owner if the epoch is still `epoch` (nobody runs it now);
 * - `remove(name, epoch?)`: deletes the row (only at that epoch, if given); `true` if it did.
 */
export class SupervisorStorage extends Context.Tag("@foundation/core/SupervisorStorage")<
  SupervisorStorage,
  {
    readonly create: (row: ProcessRow) => Effect.Effect<Option.Option<ProcessRow>, SupervisorStorageError>
    readonly get: (name: string) => Effect.Effect<Option.Option<ProcessRow>, SupervisorStorageError>
    readonly list: Effect.Effect<ReadonlyArray<ProcessRow>, SupervisorStorageError>
    readonly acquire: (
      name: string,
      epoch: number,
      owner: Owner
    ) => Effect.Effect<Option.Option<ProcessRow>, SupervisorStorageError>
    readonly renew: (
      node: string,
      incarnation: number,
      leaseExpires: number
    ) => Effect.Effect<ReadonlyArray<ProcessRow>, SupervisorStorageError>
    readonly release: (name: string, epoch: number) => Effect.Effect<void, SupervisorStorageError>
    readonly remove: (name: string, epoch?: number) => Effect.Effect<boolean, SupervisorStorageError>
  }
>() {}

/** The rows of an in-memory storage, shared by the nodes of one simulated cluster. */
export interface MemoryStore {
  readonly rows: Map<string, ProcessRow>
}

/** Creates an empty in-memory store. */
export const makeMemoryStore = (): MemoryStore => ({ rows: new Map() })

const withOwner = (row: ProcessRow, owner: Owner | undefined, epoch = row.epoch) =>
  new ProcessRow({
    ...row,
    epoch,
    owner: owner?.node ?? null,
    incarnation: owner?.incarnation ?? null,
    leaseExpires: owner?.leaseExpires ?? 0
  })

/**
 * An in-memory storage over a shared store: the same answers as `layerSql`, with no I/O. Like
 * `RegistryStorage.layerMemory`, it fails every operation once this node's `RunnerStorage` fails
 * (`TestCluster.crash` severs it), so a crashing node cannot write while it unwinds.
 */
export const layerMemory = (store: MemoryStore): Layer.Layer<SupervisorStorage, never, RunnerStorage> =>
  Layer.effect(
    SupervisorStorage,
    Effect.map(RunnerStorage, (runners) => {
      const live = whileStorageAnswers(
        runners,
        (operation, cause) => new SupervisorStorageError({ operation, cause })
      )
      return SupervisorStorage.of({
        create: (row) =>
          live("create", () => {
            const existing = store.rows.get(row.name)
            if (existing) return Option.some(existing)
            store.rows.set(row.name, row)
            return Option.none()
          }),
        get: (name) => live("get", () => Option.fromNullable(store.rows.get(name))),
        list: live("list", () => Array.from(store.rows.values())),
        acquire: (name, epoch, owner) =>
          live("acquire", () => {
            const row = store.rows.get(name)
            if (!row || row.epoch !== epoch) return Option.none()
            const next = withOwner(row, owner, epoch + 1)
            store.rows.set(name, next)
            return Option.some(next)
          }),
        renew: (node, incarnation, leaseExpires) =>
          live("renew", () => {
            const owned: Array<ProcessRow> = []
            for (const [name, row] of store.rows) {
              if (row.owner !== node || row.incarnation !== incarnation) continue
              const next = new ProcessRow({ ...row, leaseExpires })
              store.rows.set(name, next)
              owned.push(next)
            }
            return owned
          }),
        release: (name, epoch) =>
          live("release", () => {
            const row = store.rows.get(name)
            if (row && row.epoch === epoch) store.rows.set(name, withOwner(row, undefined))
          }),
        remove: (name, epoch) =>
          live("remove", () => {
            const row = store.rows.get(name)
            if (!row || (epoch !== undefined && row.epoch !== epoch)) return false
            store.rows.delete(name)
            return true
          })
      })
    })
  )

interface SqlRow {
  readonly name: string
  readonly kind: string
  readonly spec: string
  readonly args: string
  readonly restart: string
  readonly epoch: number | string | bigint
  readonly owner: string | null
  readonly incarnation: number | string | bigint | null
  readonly lease_expires: number | string | bigint
  readonly created_at: number | string | bigint
}

/**
 * Builds the SQL storage. It creates `${prefix}_processes` (default prefix `foundation`) if
 * missing, with portable SQL (PostgreSQL and SQLite). `acquire` is one
 * `UPDATE ... SET epoch = epoch + 1 ... WHERE name = ? AND epoch = ? RETURNING *`.
 */
export const makeSql = (options?: {
  readonly prefix?: string | undefined
}): Effect.Effect<SupervisorStorage["Type"], SupervisorStorageError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const tableName = `${options?.prefix ?? "foundation"}_processes`
    const table = sql(tableName)
    const fail = (operation: string) => (cause: unknown) => new SupervisorStorageError({ operation, cause })
    const decode = Schema.decodeUnknownSync(ProcessRow)
    // BIGINT columns come back as strings from Postgres
    const fromSql = (row: SqlRow): ProcessRow =>
      decode({
        name: row.name,
        kind: row.kind,
        spec: row.spec,
        args: row.args,
        restart: row.restart,
        epoch: Number(row.epoch),
        owner: row.owner,
        incarnation: row.incarnation === null ? null : Number(row.incarnation),
        leaseExpires: Number(row.lease_expires),
        createdAt: Number(row.created_at)
      })

    // nodes starting together race on CREATE TABLE IF NOT EXISTS (Postgres: duplicate pg_type key)
    yield* Effect.all([
      sql`CREATE TABLE IF NOT EXISTS ${table} (
      name VARCHAR(1024) PRIMARY KEY,
      kind VARCHAR(16) NOT NULL,
      spec VARCHAR(255) NOT NULL,
      args TEXT NOT NULL,
      restart VARCHAR(16) NOT NULL,
      epoch BIGINT NOT NULL,
      owner VARCHAR(255),
      incarnation BIGINT,
      lease_expires BIGINT NOT NULL,
      created_at BIGINT NOT NULL
    )`,
      // every node renews its leases by owner several times a second
      sql`CREATE INDEX IF NOT EXISTS ${sql(`${tableName}_owner`)} ON ${table} (owner, incarnation)`
    ]).pipe(
      Effect.retry({ times: 5, schedule: Schedule.jittered(Schedule.spaced(50)) }),
      Effect.mapError(fail("create table"))
    )

    const get = (name: string) =>
      sql<SqlRow>`SELECT * FROM ${table} WHERE name = ${name}`.pipe(
        Effect.map((rows) => (rows.length > 0 ? Option.some(fromSql(rows[0])) : Option.none()))
      )

    const create = (row: ProcessRow, attempts: number): Effect.Effect<Option.Option<ProcessRow>, unknown> =>
      Effect.gen(function* () {
        const inserted = yield* sql<{ name: string }>`INSERT INTO ${table} ${sql.insert({
          name: row.name,
          kind: row.kind,
          spec: row.spec,
          args: row.args,
          restart: row.restart,
          epoch: row.epoch,
          owner: row.owner,
          incarnation: row.incarnation,
          lease_expires: row.leaseExpires,
          created_at: row.createdAt
        })} ON CONFLICT (name) DO NOTHING RETURNING name`
        if (inserted.length > 0) return Option.none<ProcessRow>()
        const existing = yield* get(row.name)
        // deleted between the insert and the select: the name is free again
        if (Option.isNone(existing) && attempts > 1) return yield* create(row, attempts - 1)
        return Option.isSome(existing) ? existing : yield* Effect.fail("the row kept changing")
      })

    return SupervisorStorage.of({
      create: (row) => create(row, 3).pipe(Effect.mapError(fail("create"))),
      get: (name) => get(name).pipe(Effect.mapError(fail("get"))),
      list: sql<SqlRow>`SELECT * FROM ${table}`.pipe(
        Effect.map((rows) => rows.map(fromSql)),
        Effect.mapError(fail("list"))
      ),
      acquire: (name, epoch, owner) =>
        sql<SqlRow>`UPDATE ${table} SET epoch = ${epoch + 1}, owner = ${owner.node},
            incarnation = ${owner.incarnation}, lease_expires = ${owner.leaseExpires}
          WHERE name = ${name} AND epoch = ${epoch} RETURNING *`.pipe(
          Effect.map((rows) => (rows.length > 0 ? Option.some(fromSql(rows[0])) : Option.none())),
          Effect.mapError(fail("acquire"))
        ),
      renew: (node, incarnation, leaseExpires) =>
        sql<SqlRow>`UPDATE ${table} SET lease_expires = ${leaseExpires}
          WHERE owner = ${node} AND incarnation = ${incarnation} RETURNING *`.pipe(
          Effect.map((rows) => rows.map(fromSql)),
          Effect.mapError(fail("renew"))
        ),
      release: (name, epoch) =>
        sql`UPDATE ${table} SET owner = NULL, incarnation = NULL, lease_expires = 0
          WHERE name = ${name} AND epoch = ${epoch}`.pipe(Effect.asVoid, Effect.mapError(fail("release"))),
      remove: (name, epoch) =>
        (epoch === undefined
          ? sql<{ name: string }>`DELETE FROM ${table} WHERE name = ${name} RETURNING name`
          : sql<{
              name: string
            }>`DELETE FROM ${table} WHERE name = ${name} AND epoch = ${epoch} RETURNING name`
        ).pipe(
          Effect.map((rows) => rows.length > 0),
          Effect.mapError(fail("remove"))
        )
    })
  })

/** The SQL storage as a layer (needs a `SqlClient`). */
export const layerSql = (options?: {
  readonly prefix?: string | undefined
}): Layer.Layer<SupervisorStorage, SupervisorStorageError, SqlClient.SqlClient> =>
  Layer.effect(SupervisorStorage, makeSql(options))
