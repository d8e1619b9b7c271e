/**
 * The command protocol between a benchmark and its worker processes: the benchmark writes one JSON
 * request per line to a worker's stdin (`{ id, command }`), the worker answers with one stdout line
 * `BENCH_REPLY { id, ok, result | error }`. Also the 3-node cluster the channels and mabeam
 * benchmarks start.
 */
import * as FoundationNode from "@foundation/node/FoundationNode"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as readline from "node:readline"
import * as Processes from "./processes.js"

/** The prefix of a worker's reply lines. */
export const replyPrefix = "BENCH_REPLY "

/** A worker that takes commands. */
export interface CommandWorker extends Processes.Worker {
  readonly id: string
}

const log = (line: string) => Effect.sync(() => console.error(line))

let nextRequestId = 1

/** Sends a command to a worker and waits for its reply; fails if the worker fails it or exits. */
export const request = <A = any>(
  worker: CommandWorker,
  command: { readonly _tag: string }
): Effect.Effect<A, Error> =>
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
 * The worker side: prints the ready marker, then decodes every stdin line with `requestSchema`,
 * runs `handle` on its command and prints the reply. A line that does not decode is logged.
 */
export const serve = <C, R>(
  requestSchema: Schema.Schema<{ readonly id: number; readonly command: C }, any>,
  handle: (command: C) => Effect.Effect<unknown, unknown, R>
): Effect.Effect<void, Error, R> => {
  const decode = Schema.decodeUnknown(Schema.parseJson(requestSchema))
  const reply = (id: number, body: object) =>
    Effect.sync(() => process.stdout.write(`${replyPrefix}${JSON.stringify({ id, ...body })}\n`))
  return Effect.gen(function* () {
    yield* Effect.sync(() => console.log("FOUNDATION_BENCH_READY"))
    const lines = readline.createInterface({ input: process.stdin })
    yield* Stream.fromAsyncIterable(lines, (error) => new Error(String(error))).pipe(
      Stream.runForEach((line) =>
        decode(line).pipe(
          Effect.flatMap((request) =>
            handle(request.command).pipe(
              Effect.matchCauseEffect({
                onSuccess: (result) => reply(request.id, { ok: true, result }),
                onFailure: (cause) => reply(request.id, { ok: false, error: Cause.pretty(cause) })
              })
            )
          ),
          Effect.catchAll((error) => log(`bad command ${line}: ${error}`))
        )
      )
    )
  })
}

/**
 * Starts 3 workers `node-1` .. `node-3` running `script` on a fresh database for the scope: the
 * first alone (concurrent `CREATE TABLE` on a fresh database races), then the other two. Each gets
 * `BENCH_NODE_ID`, `BENCH_PORT`, `BENCH_RUNNER_PORT` and `BENCH_DATABASE_URL`, and is killed when
 * the scope closes.
 */
export const startNodeCluster = (databaseUrl: string, script: string) =>
  Effect.gen(function* () {
    const database = yield* Processes.temporaryDatabase(databaseUrl)
    const ports = yield* Processes.freePorts(6)
    const start = (index: number) =>
      Effect.map(
        Processes.scopedWorker({
          name: `node-${index + 1}`,
          script,
          stdin: true,
          env: {
            BENCH_NODE_ID: `node-${index + 1}`,
            BENCH_PORT: String(ports[index * 2]),
            BENCH_RUNNER_PORT: String(ports[index * 2 + 1]),
            BENCH_DATABASE_URL: database.url
          }
        }),
        (worker): CommandWorker => ({ ...worker, id: `node-${index + 1}` })
      )
    const first = yield* start(0)
    const rest = yield* Effect.forEach([1, 2], start, { concurrency: "unbounded" })
    return [first, ...rest] as const
  })

/** What a `startNodeCluster` worker is started with. */
export const clusterNodeConfig = Config.all({
  id: Config.string("BENCH_NODE_ID"),
  port: Config.port("BENCH_PORT"),
  runnerPort: Config.port("BENCH_RUNNER_PORT"),
  url: Config.string("BENCH_DATABASE_URL")
})

/** The node of a `startNodeCluster` worker: `FoundationNode.layer` on Postgres, as configured. */
export const clusterNodeLayer = (config: Config.Config.Success<typeof clusterNodeConfig>) =>
  FoundationNode.layer({
    id: config.id,
    port: config.port,
    runnerPort: config.runnerPort,
    storage: { _tag: "postgres", url: config.url }
  })
