/**
 * Node processes for the `registry` and `singleton` benchmarks (`worker.ts`), with a typed way to
 * send them commands and read their events.
 */
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"
import * as Processes from "../shared/processes.js"

const workerPath = fileURLToPath(new URL("./worker.ts", import.meta.url))

/** A `life` or `view` event printed by a worker. */
export type WorkerEvent =
  | {
      readonly type: "life"
      readonly phase: "start" | "end"
      readonly name: string
      readonly node: string
      readonly epoch: number
      readonly at: number
    }
  | {
      readonly type: "view"
      readonly name: string
      readonly node: string | null
      readonly epoch: number | null
      readonly at: number
    }

export interface Member {
  readonly id: string
  readonly port: number
  readonly runnerPort: number
}

/** A running worker: send it commands, read its events. */
export interface BenchWorker {
  readonly member: Member
  readonly process: Processes.Worker
  readonly events: Array<WorkerEvent>
  readonly command: <A = unknown>(cmd: string, args?: Record<string, unknown>) => Effect.Effect<A>
}

let nextId = 1

/** Starts `worker.ts` as `member`; resolves when it serves. */
export const startWorker = (
  member: Member,
  databaseUrl: string,
  profileDir?: string | undefined
): Effect.Effect<BenchWorker> =>
  Effect.gen(function* () {
    const process = Processes.spawnWorker({
      name: member.id,
      script: workerPath,
      stdin: true,
      execArgv: profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : undefined,
      env: {
        BENCH_NODE_ID: member.id,
        BENCH_PORT: String(member.port),
        BENCH_RUNNER_PORT: String(member.runnerPort),
        BENCH_DATABASE_URL: databaseUrl
      }
    })
    const events: Array<WorkerEvent> = []
    const pending = new Map<number, (reply: { ok: boolean; result?: unknown; error?: string }) => void>()
    process.onLine((line) => {
      if (line.startsWith("EVENT ")) events.push(JSON.parse(line.slice(6)) as WorkerEvent)
      else if (line.startsWith("REPLY ")) {
        const reply = JSON.parse(line.slice(6)) as {
          id: number
          ok: boolean
          result?: unknown
          error?: string
        }
        pending.get(reply.id)?.(reply)
        pending.delete(reply.id)
      }
    })
    yield* Effect.promise(() => process.ready)
    const command = <A>(cmd: string, args: Record<string, unknown> = {}) =>
      Effect.async<A>((resume) => {
        const id = nextId++
        pending.set(id, (reply) =>
          resume(
            reply.ok
              ? Effect.succeed(reply.result as A)
              : Effect.dieMessage(`${member.id} ${cmd}: ${reply.error}`)
          )
        )
        process.child.stdin!.write(`${JSON.stringify({ id, cmd, ...args })}\n`)
      })
    return { member, process, events, command }
  })

/** Waits until every worker sees every worker up. */
export const awaitMembership = (workers: ReadonlyArray<BenchWorker>, timeoutMs = 30_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    const ids = workers.map((worker) => worker.member.id)
    while (Date.now() < deadline) {
      const views = yield* Effect.forEach(workers, (worker) =>
        worker.command<ReadonlyArray<readonly [string, string]>>("members")
      )
      if (
        views.every((view) =>
          ids.every((id) => view.some(([member, status]) => member === id && status === "up"))
        )
      ) {
        return
      }
      yield* Effect.sleep("100 millis")
    }
    return yield* Effect.dieMessage(`the workers did not all see each other up within ${timeoutMs} ms`)
  })

/** Polls `check` every `intervalMs` until it returns a value; dies naming `what` after `timeoutMs`. */
export const waitFor = <A>(
  what: string,
  check: () => A | undefined,
  options: { readonly timeoutMs: number; readonly intervalMs?: number }
): Effect.Effect<A | undefined> =>
  Effect.gen(function* () {
    const deadline = Date.now() + options.timeoutMs
    while (Date.now() < deadline) {
      const result = check()
      if (result !== undefined) return result
      yield* Effect.sleep(options.intervalMs ?? 2)
    }
    yield* Effect.logWarning(`gave up waiting for ${what} after ${options.timeoutMs} ms`)
    return undefined
  })
