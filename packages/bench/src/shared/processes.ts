/**
 * Process and database helpers shared by the benchmarks: free loopback ports, a throwaway Postgres
 * database, and worker processes started with `node --import tsx`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { type ChildProcess, spawn } from "node:child_process"
import * as net from "node:net"

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

/** `count` free ports, all distinct. */
export const freePorts = (count: number) =>
  Effect.promise(async () => {
    const ports = new Set<number>()
    for (let attempt = 0; ports.size < count && attempt < count * 10; attempt++) ports.add(await freePort())
    if (ports.size < count) throw new Error(`could not find ${count} free ports`)
    return Array.from(ports)
  })

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

/** What `spawnWorker` starts. */
export interface WorkerOptions {
  readonly name: string
  /** the TypeScript entry point, run with `node --import tsx` */
  readonly script: string
  readonly env: Record<string, string>
  /** extra node flags, before `--import tsx` */
  readonly execArgv?: ReadonlyArray<string> | undefined
  /** keep stdin open as a pipe (for workers that take commands) */
  readonly stdin?: boolean | undefined
  /** the stdout line that means "serving" (default `FOUNDATION_BENCH_READY`) */
  readonly readyMarker?: string | undefined
}

/** A worker process. Its stderr goes to ours; its stdout is read line by line. */
export interface Worker {
  readonly name: string
  readonly child: ChildProcess
  /** resolves when the worker printed its ready marker, rejects if it exits first */
  readonly ready: Promise<void>
  /** resolves with a description of how the worker exited */
  readonly exited: Promise<string>
  /** calls `listener` with every later stdout line; returns the function that unsubscribes it */
  readonly onLine: (listener: (line: string) => void) => () => void
}

/** Starts `node --import tsx <script>`. Every environment variable of ours is passed on, plus `env`. */
export const spawnWorker = (options: WorkerOptions): Worker => {
  const marker = options.readyMarker ?? "FOUNDATION_BENCH_READY"
  const child = spawn(process.execPath, [...(options.execArgv ?? []), "--import", "tsx", options.script], {
    env: { ...process.env, ...options.env },
    stdio: [options.stdin ? "pipe" : "ignore", "pipe", "inherit"]
  })
  const listeners = new Set<(line: string) => void>()
  let tail = ""
  let partial = ""
  let resolveReady: () => void = () => undefined
  let rejectReady: (error: Error) => void = () => undefined
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve
    rejectReady = reject
  })
  ready.catch(() => undefined)
  child.stdout!.on("data", (chunk: Buffer) => {
    const text = chunk.toString()
    tail = (tail + text).slice(-4000)
    const lines = (partial + text).split("\n")
    partial = lines.pop()!
    for (const line of lines) {
      if (line.includes(marker)) resolveReady()
      for (const listener of listeners) listener(line)
    }
  })
  const exited = new Promise<string>((resolve) =>
    child.once("exit", (code, signal) => {
      const reason = `worker ${options.name} exited (${code ?? signal})`
      rejectReady(new Error(`${reason}:\n${tail}`))
      resolve(reason)
    })
  )
  return {
    name: options.name,
    child,
    ready,
    exited,
    onLine: (listener) => {
      listeners.add(listener)
      return () => listeners.delete(listener)
    }
  }
}

/** Kills a worker (SIGKILL by default) and waits for it to exit. */
export const killWorker = (worker: { readonly child: ChildProcess }, signal: NodeJS.Signals = "SIGKILL") =>
  new Promise<void>((resolve) => {
    if (worker.child.exitCode !== null || worker.child.signalCode !== null) return resolve()
    worker.child.once("exit", () => resolve())
    worker.child.kill(signal)
  })

/**
 * `spawnWorker` for the scope: the worker is killed when the scope closes, and the effect fails if
 * it does not print its ready marker within `readySeconds`.
 */
export const scopedWorker = (options: WorkerOptions, readySeconds = 90) =>
  Effect.acquireRelease(
    Effect.sync(() => spawnWorker(options)),
    (worker) => Effect.promise(() => killWorker(worker))
  ).pipe(
    Effect.tap((worker) =>
      Effect.promise(() => worker.ready).pipe(
        Effect.timeoutFail({
          duration: Duration.seconds(readySeconds),
          onTimeout: () => new Error(`${options.name} did not start within ${readySeconds} s`)
        })
      )
    )
  )
