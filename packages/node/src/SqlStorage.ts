/**
 * Where a node keeps its cluster state: the engine's runner table and shard leases
 * (`SqlRunnerStorage`), its persisted messages (`SqlMessageStorage`) and Foundation's node directory
 * (`NodeDirectory.layerSql`), all through one `SqlClient`.
 *
 * - SQLite (`@effect/sql-sqlite-node`) is the embedded default: one process, any number of nodes in
 *   it sharing one client. Several processes on one SQLite file lock each other under load
 *   (`database is locked`), so use it for a single process only.
 * - PostgreSQL (`@effect/sql-pg`) is for clusters of processes or hosts.
 */
import type * as MessageStorage from "@effect/cluster/MessageStorage"
import type { RunnerStorage } from "@effect/cluster/RunnerStorage"
import type * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as SqlMessageStorage from "@effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "@effect/cluster/SqlRunnerStorage"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as NodeDirectory from "@foundation/core/NodeDirectory"
import type { NodeDirectoryError } from "@foundation/core/NodeError"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Hash from "effect/Hash"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"

/**
 * Which database a node uses:
 * - `sqlite`: a file (its directory is created if missing), or `":memory:"`;
 * - `postgres`: a connection URL, `postgres://user@host:5432/database`.
 */
export type Storage =
  | { readonly _tag: "sqlite"; readonly filename: string }
  | { readonly _tag: "postgres"; readonly url: string }

/** The embedded default: SQLite in `.foundation/foundation.db` under the working directory. */
export const defaultStorage: Storage = { _tag: "sqlite", filename: ".foundation/foundation.db" }

/**
 * The `SqlClient` for a storage choice: `SqliteClient.layer({ filename })` or
 * `PgClient.layer({ url })`. Build it once and share it to run several nodes in one process
 * (see `shared`).
 */
export const layerClient = (storage: Storage): Layer.Layer<SqlClient.SqlClient, SqlError> => {
  if (storage._tag === "postgres") return PgClient.layer({ url: Redacted.make(storage.url) })
  return Layer.unwrapEffect(
    Effect.sync(() => {
      if (storage.filename !== ":memory:") {
        Fs.mkdirSync(Path.dirname(Path.resolve(storage.filename)), { recursive: true })
      }
      // SqliteClient.layer declares a ConfigError it never raises: opening the file is synchronous
      return Layer.orDie(SqliteClient.layer({ filename: storage.filename }))
    })
  )
}

/**
 * Builds a client once in the current scope and returns it as a layer that every node can use:
 * `Layer.build(client)` then `Layer.succeedContext`. This is how several nodes in one process share
 * one SQLite database (one connection, no file locking between them).
 */
export const shared = <E>(
  client: Layer.Layer<SqlClient.SqlClient, E>
): Effect.Effect<Layer.Layer<SqlClient.SqlClient>, E, Scope.Scope> =>
  Effect.map(Layer.build(client), Layer.succeedContext)

/**
 * The table names a node uses. With a `prefix` (for example one per test run, or several clusters
 * in one database) the engine's tables are `${prefix}_cluster_*` and the directory is
 * `${prefix}_foundation_nodes`; without one, `cluster_*` and `foundation_nodes`.
 */
export const tablePrefixes = (prefix: string | undefined) => ({
  engine: prefix === undefined ? "cluster" : `${prefix}_cluster`,
  directory: prefix === undefined ? "foundation" : `${prefix}_foundation`
})

/**
 * The engine's `RunnerStorage` on the `SqlClient` in context: `SqlRunnerStorage.layerWith({ prefix })`.
 */
export const layerRunnerStorage = (
  prefix?: string
): Layer.Layer<RunnerStorage, SqlError, SqlClient.SqlClient | ShardingConfig.ShardingConfig> =>
  SqlRunnerStorage.layerWith({ prefix: tablePrefixes(prefix).engine })

/**
 * The engine's `MessageStorage` on the `SqlClient` in context: `SqlMessageStorage.layerWith({ prefix })`.
 */
export const layerMessageStorage = (
  prefix?: string
): Layer.Layer<MessageStorage.MessageStorage, never, SqlClient.SqlClient | ShardingConfig.ShardingConfig> =>
  SqlMessageStorage.layerWith({ prefix: tablePrefixes(prefix).engine })

/** Foundation's node directory on the `SqlClient` in context: `NodeDirectory.layerSql({ prefix })`. */
export const layerDirectory = (
  prefix?: string
): Layer.Layer<NodeDirectory.NodeDirectory, NodeDirectoryError, SqlClient.SqlClient> =>
  NodeDirectory.layerSql({ prefix: tablePrefixes(prefix).directory })

/** The first half of the advisory lock key that serializes table creation (`FDN1`). */
const schemaLockClass = 0x46444e31

/**
 * The three storages of a node on the `SqlClient` in context (`layerRunnerStorage`,
 * `layerMessageStorage`, `layerDirectory`), built once.
 *
 * On PostgreSQL the build holds `pg_advisory_lock(FDN1, hash(prefix))` on a reserved connection:
 * each storage creates its tables with `CREATE TABLE IF NOT EXISTS` and the engine's `Migrator`,
 * which fail when several nodes create the same tables at the same moment (`duplicate key value
 * violates unique constraint "pg_type_typname_nsp_index"`, `relation ... already exists`), so nodes
 * started together create them one after another. Other dialects build without a lock.
 */
export const layer = (
  prefix?: string
): Layer.Layer<
  RunnerStorage | MessageStorage.MessageStorage | NodeDirectory.NodeDirectory,
  SqlError | NodeDirectoryError,
  SqlClient.SqlClient | ShardingConfig.ShardingConfig
> => {
  const storages = Layer.mergeAll(
    layerRunnerStorage(prefix),
    layerMessageStorage(prefix),
    layerDirectory(prefix)
  )
  return Layer.unwrapScoped(
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const lockScope = yield* Scope.make()
      const key = `${schemaLockClass}, ${Hash.string(tablePrefixes(prefix).engine)}`
      const context = yield* Effect.gen(function* () {
        yield* sql.onDialectOrElse({
          pg: () =>
            Effect.gen(function* () {
              const connection = yield* sql.reserve
              yield* connection.executeRaw(`SELECT pg_advisory_lock(${key})`, [])
              yield* Scope.addFinalizer(
                lockScope,
                Effect.ignore(connection.executeRaw(`SELECT pg_advisory_unlock(${key})`, []))
              )
            }).pipe(Scope.extend(lockScope)),
          orElse: () => Effect.void
        })
        return yield* Layer.build(storages)
      }).pipe(Effect.ensuring(Scope.close(lockScope, Exit.void)))
      return Layer.succeedContext(context)
    })
  )
}
