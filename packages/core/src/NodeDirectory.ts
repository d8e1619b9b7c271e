/**
 * The list of nodes that make up the cluster: who exists, where their endpoints are.
 * Liveness is not the directory's job; the failure detector decides it.
 *
 * Two layers:
 * - `layerSql`: a `foundation_nodes` table next to the engine's `cluster_runners`, through the same
 *   `SqlClient` (PostgreSQL or SQLite). Rows carry a `last_seen` refreshed by their node; rows older
 *   than `ttl` are not listed, so a node that vanished for good drops out of the view.
 * - `layerMemory(store)`: a shared in-memory store, for nodes inside one process (TestCluster).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { type NodeId, NodeInfo } from "./Node.js"
import { NodeDirectoryError } from "./NodeError.js"

/**
 * The directory service.
 * - `register(info)`: insert or refresh this node's entry (an upsert; also its heartbeat row);
 * - `unregister(id)`: remove an entry (graceful leave);
 * - `list`: the current entries.
 */
export class NodeDirectory extends Context.Tag("@foundation/core/NodeDirectory")<
  NodeDirectory,
  {
    readonly register: (info: NodeInfo) => Effect.Effect<void, NodeDirectoryError>
    readonly unregister: (id: NodeId) => Effect.Effect<void, NodeDirectoryError>
    readonly list: Effect.Effect<ReadonlyArray<NodeInfo>, NodeDirectoryError>
  }
>() {}

/** A store shared by in-memory directories, one per simulated cluster. */
export interface MemoryStore {
  readonly entries: Map<string, NodeInfo>
}

/** Creates an empty in-memory store. */
export const makeMemoryStore = (): MemoryStore => ({ entries: new Map() })

/** An in-memory directory over a shared store: entries stay until unregistered. */
export const layerMemory = (store: MemoryStore): Layer.Layer<NodeDirectory> =>
  Layer.succeed(
    NodeDirectory,
    NodeDirectory.of({
      register: (info) => Effect.sync(() => void store.entries.set(info.id, info)),
      unregister: (id) => Effect.sync(() => void store.entries.delete(id)),
      list: Effect.sync(() => Array.from(store.entries.values()))
    })
  )

/**
 * Builds the SQL directory. It creates `${prefix}_nodes` if missing (portable SQL: PostgreSQL and
 * SQLite), and uses this process's clock for `last_seen`, so entries survive clock skew of less than `ttl`.
 */
export const makeSql = (options?: {
  readonly prefix?: string | undefined
  readonly ttl?: Duration.DurationInput | undefined
}) =>
  Effect.gen(function* () {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const table = sql(`${options?.prefix ?? "foundation"}_nodes`)
    const ttlMillis = Duration.toMillis(options?.ttl ?? Duration.seconds(30))
    const encodeInfo = Schema.encodeSync(Schema.parseJson(NodeInfo))
    const decodeInfo = Schema.decodeUnknownOption(Schema.parseJson(NodeInfo))
    const fail = (operation: string) => (cause: unknown) => new NodeDirectoryError({ operation, cause })

    yield* sql`CREATE TABLE IF NOT EXISTS ${table} (
      node_id VARCHAR(255) PRIMARY KEY,
      info TEXT NOT NULL,
      last_seen BIGINT NOT NULL
    )`.pipe(Effect.mapError(fail("create table")))

    return NodeDirectory.of({
      register: (info) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          sql`INSERT INTO ${table} (node_id, info, last_seen) VALUES (${info.id}, ${encodeInfo(info)}, ${now})
              ON CONFLICT (node_id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen`.pipe(
            Effect.asVoid,
            Effect.mapError(fail("register"))
          )
        ),
      unregister: (id) =>
        sql`DELETE FROM ${table} WHERE node_id = ${id}`.pipe(
          Effect.asVoid,
          Effect.mapError(fail("unregister"))
        ),
      list: Effect.flatMap(Clock.currentTimeMillis, (now) =>
        sql<{ info: string }>`SELECT info FROM ${table} WHERE last_seen > ${now - ttlMillis}`.pipe(
          Effect.map((rows) =>
            rows.flatMap((row) => {
              const info = decodeInfo(row.info)
              return info._tag === "Some" ? [info.value] : []
            })
          ),
          Effect.mapError(fail("list"))
        )
      )
    })
  })

/** The SQL directory as a layer (needs a `SqlClient`). */
export const layerSql = (options?: {
  readonly prefix?: string | undefined
  readonly ttl?: Duration.DurationInput | undefined
}): Layer.Layer<NodeDirectory, NodeDirectoryError, SqlClient.SqlClient> =>
  Layer.effect(NodeDirectory, makeSql(options))
