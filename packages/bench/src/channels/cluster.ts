/**
 * The node processes of the channels and sharedconfig benchmarks: 3 workers (`worker.ts`) on a
 * throwaway Postgres database, each a Foundation node with Channels and SharedConfig, driven over
 * stdin. Every worker is killed when the scope closes.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"
import * as Processes from "../shared/processes.js"
import { type Command, replyPrefix } from "./protocol.js"

const workerPath = fileURLToPath(new URL("./worker.ts", import.meta.url))

export const log = (line: string) => Effect.sync(() => console.error(line))

export interface BenchWorker extends Processes.Worker {
  readonly id: string
}

let nextRequestId = 1

/** Sends a command to a worker and waits for its reply. */
export const request = <A = any>(worker: BenchWorker, command: Command): Effect.Effect<A, Error> =>
  Effect.async<A, Error>((resume) => {
    const id = nextRequestId++
    let done = false
    const finish = (effect: Effect.Effect<A, Error>) => {
      if (done) return
      done = true
      unsubscribe()
      resume(effect)
    }
    const unsubscribe = worker.onLine((line) => {
      if (!line.startsWith(replyPrefix)) return
      const reply = JSON.parse(line.slice(replyPrefix.length))
      if (reply.id !== id) return
      finish(
        reply.ok
          ? Effect.succeed(reply.result as A)
          : Effect.fail(new Error(`${worker.id} ${command._tag}: ${reply.error}`))
      )
    })
    void worker.exited.then((reason) => finish(Effect.fail(new Error(reason))))
    worker.child.stdin!.write(`${JSON.stringify({ id, command })}\n`)
    return Effect.sync(unsubscribe)
  })

/**
 * Starts 3 workers `node-1` .. `node-3` on a fresh database for the scope: the first alone
 * (concurrent `CREATE TABLE` on a fresh database races), then the other two.
 */
export const startCluster = (databaseUrl: string) =>
  Effect.gen(function* () {
    const database = yield* Processes.temporaryDatabase(databaseUrl)
    const ports = yield* Processes.freePorts(6)
    const start = (index: number) =>
      Effect.acquireRelease(
        Effect.sync(
          (): BenchWorker => ({
            id: `node-${index + 1}`,
            ...Processes.spawnWorker({
              name: `node-${index + 1}`,
              script: workerPath,
              stdin: true,
              env: {
                BENCH_NODE_ID: `node-${index + 1}`,
                BENCH_PORT: String(ports[index * 2]),
                BENCH_RUNNER_PORT: String(ports[index * 2 + 1]),
                BENCH_DATABASE_URL: database.url
              }
            })
          })
        ),
        (worker) => Effect.promise(() => Processes.killWorker(worker))
      ).pipe(
        Effect.tap((worker) =>
          Effect.promise(() => worker.ready).pipe(
            Effect.timeoutFail({
              duration: Duration.seconds(90),
              onTimeout: () => new Error(`${worker.id} did not start within 90 s`)
            })
          )
        )
      )
    const first = yield* start(0)
    const rest = yield* Effect.forEach([1, 2], start, { concurrency: "unbounded" })
    yield* log(`[bench] 3 node processes serving`)
    return [first, ...rest] as const
  })

export const round = (value: number, digits: number) => Number(value.toFixed(digits))
