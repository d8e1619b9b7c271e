/**
 * The failover benchmark: 3 node processes on Postgres. Each trial sends a probe entity a call,
 * kills (SIGKILL) or freezes (SIGSTOP) the node that answered, and measures the milliseconds until
 * the same entity answers again from another node. The baseline runs the same trials with the
 * engine's default settings and health check instead of Foundation's detector.
 */
import * as Sharding from "@effect/cluster/Sharding"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { clientLayer, killWorker, type Mode, startWorker, temporaryDatabase, type Worker } from "./cluster.js"
import { Probe } from "./Probe.js"
import { freePort } from "../shared/processes.js"
import { percentile } from "../shared/stats.js"

export interface FailoverOptions {
  readonly databaseUrl: string
  readonly trials: number
  readonly sigstopTrials: number
  readonly baselineTrials: number
}

const log = (line: string) => Effect.sync(() => console.error(line))

/** Runs `trials` trials of one scenario and returns the failover time of each, in ms. */
const scenario = (options: FailoverOptions, mode: Mode, signal: "SIGKILL" | "SIGSTOP", trials: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      if (trials === 0) return [] as Array<number>
      const database = yield* temporaryDatabase(options.databaseUrl)
      const specs = yield* Effect.promise(async () => {
        const specs = []
        for (let i = 1; i <= 3; i++) {
          specs.push({ id: `node-${i}`, port: await freePort(), runnerPort: await freePort() })
        }
        return specs
      })
      const workers = new Map<string, Worker>()
      const start = (spec: (typeof specs)[number]) =>
        Effect.gen(function* () {
          const worker = startWorker(spec, mode, database.url)
          workers.set(spec.id, worker)
          yield* Effect.promise(() => worker.ready).pipe(
            Effect.timeoutFail({
              duration: Duration.seconds(60),
              onTimeout: () => new Error(`${spec.id} did not start within 60 s`)
            }),
            Effect.orDie
          )
        })
      yield* Effect.addFinalizer(() =>
        Effect.promise(() => Promise.all(Array.from(workers.values(), (worker) => killWorker(worker))))
      )
      // the first node creates the tables alone: concurrent CREATE TABLE on a fresh database races
      yield* start(specs[0]!)
      yield* Effect.forEach(specs.slice(1), start, { concurrency: "unbounded", discard: true })

      const context = yield* Layer.build(clientLayer(mode, database.url))
      const makeProbe = yield* Effect.provide(Sharding.Sharding, context).pipe(
        Effect.flatMap((sharding) => sharding.makeClient(Probe))
      )
      const where = (entityId: string) =>
        makeProbe(entityId)
          .Where()
          .pipe(Effect.timeout(Duration.seconds(1)), Effect.option)

      const answerFrom = (entityId: string, accept: (node: string) => boolean, within: Duration.Duration) =>
        Effect.gen(function* () {
          const deadline = Date.now() + Duration.toMillis(within)
          while (Date.now() < deadline) {
            const answer = yield* where(entityId)
            if (answer._tag === "Some" && accept(answer.value.node)) return answer.value.node
            if (answer._tag === "Some") yield* Effect.sleep(Duration.millis(5))
          }
          return yield* Effect.dieMessage(`${entityId} did not answer within ${Duration.format(within)}`)
        })

      const settle = mode === "engine" ? Duration.seconds(8) : Duration.seconds(3)
      yield* answerFrom("warmup", () => true, Duration.seconds(60))
      yield* Effect.sleep(settle)

      const times: Array<number> = []
      for (let trial = 1; trial <= trials; trial++) {
        const entityId = `probe-${trial}`
        const host = yield* answerFrom(entityId, () => true, Duration.seconds(60))
        const victim = workers.get(host)!
        const startedAt = Date.now()
        victim.child.kill(signal)
        const movedTo = yield* answerFrom(entityId, (node) => node !== host, Duration.seconds(120))
        const elapsed = Date.now() - startedAt
        times.push(elapsed)
        yield* log(`[${mode} ${signal}] trial ${trial}: ${host} -> ${movedTo} in ${elapsed} ms`)
        yield* Effect.promise(() => killWorker(victim))
        yield* start(victim.spec)
        yield* Effect.sleep(settle)
      }
      return times
    })
  )

/** Runs the scenarios and builds the JSON result line. */
export const runFailover = (options: FailoverOptions) =>
  Effect.gen(function* () {
    const kill9 = yield* scenario(options, "foundation", "SIGKILL", options.trials)
    const sigstop = yield* scenario(options, "foundation", "SIGSTOP", options.sigstopTrials)
    const baseline = yield* scenario(options, "engine", "SIGKILL", options.baselineTrials)
    return {
      scenario: "failover",
      trials: kill9.length,
      kill9_p50_ms: percentile(kill9, 50),
      kill9_p90_ms: percentile(kill9, 90),
      kill9_max_ms: Math.max(...kill9),
      sigstop_trials: sigstop.length,
      sigstop_p50_ms: percentile(sigstop, 50),
      sigstop_max_ms: Math.max(...sigstop),
      baseline_trials: baseline.length,
      baseline_kill9_p50_ms: percentile(baseline, 50),
      baseline_kill9_max_ms: Math.max(...baseline),
      kill9_ms: kill9,
      sigstop_ms: sigstop,
      baseline_kill9_ms: baseline
    }
  })
