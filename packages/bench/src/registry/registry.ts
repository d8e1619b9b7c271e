/**
 * `npm run bench -- registry`: three node processes on a throwaway Postgres database, each running
 * the Registry on SQL storage.
 *
 * - `register_per_s`: `names` registrations (10k), a third from each node at once, `concurrency` in
 *   flight per node; each returns once every node can look the name up. A round is measured from
 *   the first start to the last end; after `warmupRounds` warm-up rounds of the same size (3: the
 *   first round of a fresh process runs at about half speed, before the JIT has compiled the path),
 *   `rounds` measured rounds (3) on new names each, and the median is reported (every round's rate
 *   in `register_runs_per_s`). Names stay registered, so the last round runs against
 *   (warmupRounds + rounds - 1) × `names` existing entries.
 *   `register_cpu_ms` is the CPU time the node processes used meanwhile (summed; Postgres's is not
 *   counted, median round): a figure that depends less on what else the machine runs than the rate does.
 *   Each node provides the names' scope once, around its loop of registrations.
 * - `register_scope_per_call_per_s` and `_cpu_ms`: one more round after the measured ones, with
 *   `Scope.extend` on every call instead: the usage pattern that costs the caller's fibers more than
 *   the registry does (see docs/registry.md).
 * - `lookup_local_p50_us`: one node times `Registry.lookup` of random registered names.
 * - `visible_everywhere_lag_ms`: one node registers a name, then at once asks the two others over
 *   node RPC whether they see it; 0 when they all do on the first ask (read-your-writes).
 * - `facade_overhead_ratio`: `ProcessManager.lookupSingleton` against the raw code its doc comment
 *   gives (`Registry.lookup` + `Supervisor.refOf`): the median over 21 rounds (each times both, back
 *   to back, 50,000 calls each) of facade / raw - 1.
 *   The facade reads the view with `Registry.unsafeLookup`, so it can beat that raw code;
 *   `facade_overhead_vs_same_calls_ratio` compares it with those same calls made directly, which
 *   leaves only the facade's own work (context read, log-level check).
 */
import * as Effect from "effect/Effect"
import * as Processes from "../shared/processes.js"
import { type BenchWorker, awaitMembership, startWorker } from "./cluster.js"

export interface Options {
  readonly databaseUrl: string
  readonly names: number
  readonly concurrency: number
  readonly lookupSamples: number
  readonly lagTrials: number
  readonly warmupRounds: number
  readonly rounds: number
  /** a directory: CPU-profile every worker (they then exit with SIGTERM, which writes the profile) */
  readonly profileDir?: string | undefined
}

/** One registration round, cluster-wide. */
interface RoundResult {
  readonly perSecond: number
  readonly elapsedMs: number
  readonly failed: number
  readonly cpuMs: number
}

const registerRound = (
  workers: ReadonlyArray<BenchWorker>,
  prefix: string,
  names: number,
  concurrency: number,
  scopePerCall = false
) =>
  Effect.gen(function* () {
    const slice = Math.ceil(names / workers.length)
    const results = yield* Effect.forEach(
      workers,
      (worker, i) =>
        worker.command<{ startedAt: number; endedAt: number; failed: number; cpuMs: number }>("register", {
          prefix,
          from: i * slice,
          to: Math.min(names, (i + 1) * slice),
          concurrency,
          scopePerCall
        }),
      { concurrency: "unbounded" }
    )
    const elapsedMs =
      Math.max(...results.map((r) => r.endedAt)) - Math.min(...results.map((r) => r.startedAt))
    const result: RoundResult = {
      perSecond: Math.round((names / elapsedMs) * 1000),
      elapsedMs,
      failed: results.reduce((sum, r) => sum + r.failed, 0),
      cpuMs: results.reduce((sum, r) => sum + r.cpuMs, 0)
    }
    return result
  })

export const runRegistry = (options: Options) =>
  Effect.gen(function* () {
    const database = yield* Processes.temporaryDatabase(options.databaseUrl)
    const ports = yield* Processes.freePorts(6)
    const members = [0, 1, 2].map((i) => ({
      id: `w-${i + 1}`,
      port: ports[i * 2],
      runnerPort: ports[i * 2 + 1]
    }))
    const workers = yield* Effect.acquireRelease(
      Effect.forEach(members, (member) => startWorker(member, database.url, options.profileDir), {
        concurrency: "unbounded"
      }),
      (workers) =>
        Effect.gen(function* () {
          if (options.profileDir) {
            yield* Effect.forEach(workers, (worker) => worker.command("exit"), { discard: true })
            yield* Effect.sleep("2 seconds")
          }
          yield* Effect.promise(() =>
            Promise.all(workers.map((worker) => Processes.killWorker(worker.process)))
          )
        })
    )
    yield* awaitMembership(workers)
    yield* Effect.sleep("1 second")
    const [first, ...others] = workers

    const warmups: Array<number> = []
    for (let i = 0; i < options.warmupRounds; i++) {
      const warmup = yield* registerRound(workers, `warm${i}-`, options.names, options.concurrency)
      warmups.push(warmup.perSecond)
      yield* Effect.logInfo(`warm-up ${i + 1}: ${warmup.perSecond}/s`)
    }
    // the first measured round's names ("bench-") are the ones looked up below
    const rounds: Array<RoundResult> = []
    for (let i = 0; i < Math.max(1, options.rounds); i++) {
      const result = yield* registerRound(
        workers,
        i === 0 ? "bench-" : `bench${i}-`,
        options.names,
        options.concurrency
      )
      rounds.push(result)
      yield* Effect.logInfo(
        `registered ${options.names} names in ${result.elapsedMs} ms: ${result.perSecond}/s`
      )
    }
    const round = [...rounds].sort((a, b) => a.perSecond - b.perSecond)[Math.floor(rounds.length / 2)]!
    const scopePerCall = yield* registerRound(workers, "per-call-", options.names, options.concurrency, true)
    yield* Effect.logInfo(`with Scope.extend on every call: ${scopePerCall.perSecond}/s`)
    const counts = yield* Effect.forEach(workers, (worker) =>
      worker.command<{ found: number }>("lookups", {
        prefix: "bench-",
        count: options.names,
        samples: options.names
      })
    )

    const lookups = yield* first.command<{ p50: number; p99: number; found: number }>("lookups", {
      prefix: "bench-",
      count: options.names,
      samples: options.lookupSamples
    })
    yield* Effect.logInfo(`local lookup p50 ${lookups.p50.toFixed(2)} µs, p99 ${lookups.p99.toFixed(2)} µs`)

    const lag = yield* first.command<{ max: number; p50: number; misses: number; trials: number }>("lag", {
      trials: options.lagTrials,
      peers: others.map((worker) => worker.member.id)
    })
    yield* Effect.logInfo(`visibility lag over ${lag.trials} trials: max ${lag.max} ms, ${lag.misses} misses`)

    yield* first.command("start", { name: "facade-probe", label: "facade" })
    const facade = yield* first.command<{
      rawUs: number
      sameCallsUs: number
      facadeUs: number
      ratio: number
      sameCallsRatio: number
    }>("facade", {
      name: "facade-probe",
      samples: 50_000,
      rounds: 21
    })
    yield* Effect.logInfo(
      `lookupSingleton: raw ${facade.rawUs.toFixed(3)} µs, same calls ${facade.sameCallsUs.toFixed(3)} µs, facade ${facade.facadeUs.toFixed(3)} µs (${(facade.ratio * 100).toFixed(1)}% vs raw, ${(facade.sameCallsRatio * 100).toFixed(1)}% vs same calls)`
    )

    return {
      scenario: "registry",
      nodes: workers.length,
      storage: "postgres",
      names: options.names,
      concurrency_per_node: options.concurrency,
      register_per_s: round.perSecond,
      register_elapsed_ms: round.elapsedMs,
      register_failed: rounds.reduce((sum, r) => sum + r.failed, 0),
      register_cpu_ms: Math.round(round.cpuMs),
      register_runs_per_s: rounds.map((r) => r.perSecond),
      register_scope_per_call_per_s: scopePerCall.perSecond,
      register_scope_per_call_cpu_ms: Math.round(scopePerCall.cpuMs),
      warmup_register_per_s: warmups,
      visible_on_every_node: counts.every((count) => count.found === options.names),
      lookup_local_p50_us: Number(lookups.p50.toFixed(3)),
      lookup_local_p99_us: Number(lookups.p99.toFixed(3)),
      visible_everywhere_lag_ms: lag.max,
      visible_everywhere_lag_trials: lag.trials,
      facade_overhead_ratio: Number(facade.ratio.toFixed(4)),
      facade_overhead_vs_same_calls_ratio: Number(facade.sameCallsRatio.toFixed(4)),
      facade_lookup_us: Number(facade.facadeUs.toFixed(3)),
      raw_lookup_us: Number(facade.rawUs.toFixed(3)),
      same_calls_lookup_us: Number(facade.sameCallsUs.toFixed(3))
    }
  }).pipe(Effect.scoped)
