/**
 * Process management for the failover benchmark: a throwaway Postgres database, node processes
 * started from `worker.ts`, and a client-only engine runtime in this process to call the probe.
 */
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as SocketRunner from "@effect/cluster/SocketRunner"
import * as SqlMessageStorage from "@effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "@effect/cluster/SqlRunnerStorage"
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Foundation } from "@foundation/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

export type Mode = "foundation" | "engine"

const workerPath = fileURLToPath(new URL("./worker.ts", import.meta.url))

/** A fresh database on the server at `baseUrl`, dropped when the scope closes. */
export const temporaryDatabase = (baseUrl: string) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const name = `foundation_bench_${process.pid}_${Date.now()}`
      yield* adminQuery(baseUrl, `CREATE DATABASE ${name}`)
      const url = new URL(baseUrl)
      url.pathname = `/${name}`
      return { name, url: url.toString() }
    }),
    ({ name }) => adminQuery(baseUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  )

const adminQuery = (url: string, query: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(query)).pipe(
    Effect.provide(PgClient.layer({ url: Redacted.make(url) })),
    Effect.orDie,
    Effect.asVoid
  )

export interface WorkerSpec {
  readonly id: string
  readonly port: number
  readonly runnerPort: number
}

/** One node process; `ready` resolves when it serves. */
export interface Worker {
  readonly spec: WorkerSpec
  readonly child: ChildProcess
  readonly ready: Promise<void>
}

export const startWorker = (spec: WorkerSpec, mode: Mode, databaseUrl: string): Worker => {
  const child = spawn(process.execPath, ["--import", "tsx", workerPath], {
    env: {
      ...process.env,
      BENCH_NODE_ID: spec.id,
      BENCH_PORT: String(spec.port),
      BENCH_RUNNER_PORT: String(spec.runnerPort),
      BENCH_DATABASE_URL: databaseUrl,
      BENCH_MODE: mode
    },
    stdio: ["ignore", "pipe", "inherit"]
  })
  const ready = new Promise<void>((resolve, reject) => {
    let buffer = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      buffer += chunk.toString()
      if (buffer.includes("FOUNDATION_BENCH_READY")) resolve()
      if (buffer.length > 65536) buffer = buffer.slice(-1024)
    })
    child.once("exit", (code, signal) =>
      reject(new Error(`worker ${spec.id} exited (${code ?? signal}):\n${buffer.slice(-4000)}`))
    )
  })
  ready.catch(() => undefined)
  return { spec, child, ready }
}

export const killWorker = (worker: Worker, signal: NodeJS.Signals = "SIGKILL") =>
  new Promise<void>((resolve) => {
    if (worker.child.exitCode !== null || worker.child.signalCode !== null) return resolve()
    worker.child.once("exit", () => resolve())
    worker.child.kill(signal)
  })

/** The engine settings of a mode, as the workers use them. */
export const shardingFor = (mode: Mode): Partial<ShardingConfig.ShardingConfig["Type"]> =>
  mode === "engine" ? {} : Foundation.shardingDefaults

/** A client-only runtime on the same storage: it routes calls exactly as a node would. */
export const clientLayer = (mode: Mode, databaseUrl: string) =>
  SocketRunner.layerClientOnly.pipe(
    Layer.provide(NodeClusterSocket.layerClientProtocol),
    Layer.provide(RpcSerialization.layerMsgPack),
    Layer.provide([Layer.orDie(SqlMessageStorage.layer), Layer.orDie(SqlRunnerStorage.layer)]),
    Layer.provide(ShardingConfig.layer({ ...shardingFor(mode), runnerAddress: Option.none() })),
    Layer.provide(Layer.orDie(PgClient.layer({ url: Redacted.make(databaseUrl) })))
  )
