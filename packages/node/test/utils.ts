import * as SqlClient from "@effect/sql/SqlClient"
import { Node, type NodeDown } from "@foundation/core/Node"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import * as FoundationNode from "../src/FoundationNode.js"
import * as Sample from "../src/Sample.js"
import * as SocketTransport from "../src/SocketTransport.js"
import * as SqlStorage from "../src/SqlStorage.js"

const repoRoot = Path.resolve(import.meta.dirname, "../../..")
const binPath = Path.resolve(import.meta.dirname, "../src/bin.ts")

/** Polls `check` every `intervalMs` until it returns a value, at most `timeoutMs`; then dies naming `what`. */
export const waitUntil = <A, E, R>(
  what: string,
  check: Effect.Effect<A | undefined, E, R>,
  options: { readonly timeoutMs: number; readonly intervalMs?: number }
): Effect.Effect<A, E, R> =>
  Effect.gen(function* () {
    const deadline = Date.now() + options.timeoutMs
    while (Date.now() < deadline) {
      const result = yield* check
      if (result !== undefined) return result
      yield* Effect.sleep(options.intervalMs ?? 50)
    }
    return yield* Effect.dieMessage(`timed out after ${options.timeoutMs} ms waiting for ${what}`)
  })

export type Running = FoundationNode.RunningNode

/** Starts `count` nodes with the sample application on one shared client, loopback ports. */
export const startNodes = (
  count: number,
  sql: Layer.Layer<SqlClient.SqlClient>
): Effect.Effect<ReadonlyArray<Running>, FoundationNode.StartError, Scope.Scope> =>
  Effect.gen(function* () {
    const ports = yield* SocketTransport.freePorts(count * 2)
    return yield* Effect.forEach(
      Array.from({ length: count }, (_, i) => i),
      (i) =>
        FoundationNode.start(
          { id: `node-${i + 1}`, port: ports[i * 2], runnerPort: ports[i * 2 + 1], storage: sql },
          Sample.layer(() => Effect.void)
        ),
      { concurrency: "unbounded" }
    )
  })

/** The shared in-memory SQLite client of one test. */
export const sharedSqlite = SqlStorage.shared(
  SqlStorage.layerClient({ _tag: "sqlite", filename: ":memory:" })
)

/** This node's view: member id -> status (with the down reason). */
export const view = (node: Running) =>
  node.run(
    Effect.map(
      Effect.flatMap(Node, (n) => n.members),
      (members) =>
        new Map(members.map((m) => [m.info.id as string, m.downReason ? `down (${m.downReason})` : m.status]))
    )
  )

/** Waits until every node sees all `ids` up. */
export const awaitAllUp = (nodes: ReadonlyArray<Running>, ids: ReadonlyArray<string>, timeoutMs = 15_000) =>
  waitUntil(
    "every node to see every node up",
    Effect.map(Effect.forEach(nodes, view), (views) =>
      views.every((v) => ids.every((id) => v.get(id) === "up")) ? true : undefined
    ),
    { timeoutMs }
  )

/** `Greeter.Where` for each id, from `caller`. */
export const placements = (caller: Running, ids: ReadonlyArray<string>) =>
  caller.run(
    Effect.flatMap(Sample.Greeter.client, (client) =>
      Effect.forEach(ids, (id) => client(id).Where().pipe(Effect.timeout("10 seconds"), Effect.orDie), {
        concurrency: "unbounded"
      })
    )
  )

/** Subscribes now; the fiber completes with the first `NodeDown` of `id` that `observer` sees. */
export const nextDown = (observer: Running, id: string) =>
  Effect.gen(function* () {
    const events = yield* Effect.flatten(observer.run(Effect.map(Node, (n) => n.events)))
    return yield* events.pipe(
      Stream.filter((event): event is NodeDown => event._tag === "NodeDown" && event.node.id === id),
      Stream.runHead,
      Effect.map(Option.getOrThrow),
      Effect.fork
    )
  })

/** A child process, killed (SIGKILL) when the scope closes if it is still running. */
export interface Child {
  readonly process: ChildProcess.ChildProcess
  /** what it printed so far, stdout and stderr interleaved */
  readonly output: () => string
  /** what it printed on stdout so far */
  readonly stdout: () => string
  readonly exited: Effect.Effect<number | null>
}

/**
 * Spawns `node --import tsx <script> ...args` from the repository root, with this environment minus
 * its `FOUNDATION_*` variables, plus `env`.
 */
export const spawnTs = (
  script: string,
  args: ReadonlyArray<string>,
  env: Record<string, string>
): Effect.Effect<Child, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const clean = Object.fromEntries(
        Object.entries(process.env).filter(([key]) => !key.startsWith("FOUNDATION_"))
      ) as Record<string, string>
      const child = ChildProcess.spawn(process.execPath, ["--import", "tsx", script, ...args], {
        cwd: repoRoot,
        env: { ...clean, ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      let stdout = ""
      child.stdout!.on("data", (chunk) => {
        output += chunk
        stdout += chunk
      })
      child.stderr!.on("data", (chunk) => (output += chunk))
      const exit = new Promise<number | null>((resolve) => {
        if (child.exitCode !== null) resolve(child.exitCode)
        child.once("exit", (code) => resolve(code))
      })
      return {
        process: child,
        output: () => output,
        stdout: () => stdout,
        exited: Effect.promise(() => exit)
      }
    }),
    (child) =>
      Effect.gen(function* () {
        if (child.process.exitCode === null && child.process.signalCode === null) {
          child.process.kill("SIGKILL")
        }
        yield* child.exited.pipe(Effect.timeout("5 seconds"), Effect.ignore)
      })
  )

/** Spawns the `foundation` command (`src/bin.ts ...args`), as `spawnTs` does. */
export const spawnCli = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  spawnTs(binPath, args, env)

/** The complete lines of `text` that parse as JSON (a process's stdout), in order. */
export const jsonLines = (text: string): Array<any> =>
  text
    .split("\n")
    .slice(0, -1)
    .flatMap((line) => {
      try {
        return [JSON.parse(line)]
      } catch {
        return []
      }
    })

/**
 * The PostgreSQL URL of the tests, `FOUNDATION_TEST_PG_URL`; without it, logs that `what` is skipped
 * and returns `undefined` (use it with `describe.skipIf`).
 */
export const postgresUrl = (what: string): string | undefined => {
  const url = process.env.FOUNDATION_TEST_PG_URL
  if (!url) console.log(`${what} skipped: set FOUNDATION_TEST_PG_URL=postgres://user@host:5432/db`)
  return url
}

/** One PostgreSQL client for a whole test, closed with the test's scope. */
export const sharedPostgres = (url: string) =>
  SqlStorage.shared(SqlStorage.layerClient({ _tag: "postgres", url }))

/**
 * A fresh table prefix, `<tag>_<time>_<random>`, for one test on `sql`. On PostgreSQL the tables it
 * names are dropped when the scope closes; an SQLite `:memory:` database goes with its client.
 */
export const freshPrefix = (sql: Layer.Layer<SqlClient.SqlClient>, tag: string) =>
  Effect.acquireRelease(
    Effect.sync(() => `${tag}_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6).toString(36)}`),
    (prefix) =>
      Effect.gen(function* () {
        const client = yield* SqlClient.SqlClient
        yield* client.onDialectOrElse({
          pg: () =>
            Effect.gen(function* () {
              const tables = yield* client<{ tablename: string }>`
                SELECT tablename FROM pg_tables
                WHERE schemaname = current_schema() AND tablename LIKE ${`${prefix}_%`}`
              for (const { tablename } of tables) {
                yield* client.unsafe(`DROP TABLE IF EXISTS "${tablename}" CASCADE`)
              }
            }),
          orElse: () => Effect.void
        })
      }).pipe(Effect.provide(sql), Effect.orDie)
  )
