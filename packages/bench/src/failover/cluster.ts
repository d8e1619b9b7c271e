/**
 * Process management for the failover benchmark: a throwaway Postgres database, node processes
 * started from `worker.ts`, and a client-only engine runtime in this process to call the probe.
 */
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as SocketRunner from "@effect/cluster/SocketRunner"
import * as SqlMessageStorage from "@effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "@effect/cluster/SqlRunnerStorage"
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Foundation } from "@foundation/core"
import * as SocketTransport from "@foundation/node/SocketTransport"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { fileURLToPath } from "node:url"
import * as Processes from "../shared/processes.js"

export { killWorker, temporaryDatabase } from "../shared/processes.js"

export type Mode = "foundation" | "engine"

const workerPath = fileURLToPath(new URL("./worker.ts", import.meta.url))

export interface WorkerSpec {
  readonly id: string
  readonly port: number
  readonly runnerPort: number
}

/** One node process; `ready` resolves when it serves. */
export interface Worker extends Processes.Worker {
  readonly spec: WorkerSpec
}

export const startWorker = (spec: WorkerSpec, mode: Mode, databaseUrl: string): Worker => ({
  spec,
  ...Processes.spawnWorker({
    name: spec.id,
    script: workerPath,
    env: {
      BENCH_NODE_ID: spec.id,
      BENCH_PORT: String(spec.port),
      BENCH_RUNNER_PORT: String(spec.runnerPort),
      BENCH_DATABASE_URL: databaseUrl,
      BENCH_MODE: mode
    }
  })
})

/** The engine settings of a mode, as the workers use them. */
export const shardingFor = (mode: Mode): Partial<ShardingConfig.ShardingConfig["Type"]> =>
  mode === "engine" ? {} : Foundation.shardingDefaults

/** A client-only runtime on the same storage: it routes calls exactly as a node would. */
export const clientLayer = (mode: Mode, databaseUrl: string) =>
  SocketRunner.layerClientOnly.pipe(
    Layer.provide(NodeClusterSocket.layerClientProtocol),
    // the nodes' runner endpoints speak msgpack without records
    Layer.provide(SocketTransport.layerSerialization),
    Layer.provide([Layer.orDie(SqlMessageStorage.layer), Layer.orDie(SqlRunnerStorage.layer)]),
    Layer.provide(ShardingConfig.layer({ ...shardingFor(mode), runnerAddress: Option.none() })),
    Layer.provide(Layer.orDie(PgClient.layer({ url: Redacted.make(databaseUrl) })))
  )
