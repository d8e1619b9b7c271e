/**
 * `npm run bench -- singleton`: three node processes on a throwaway Postgres database, each running
 * the Registry and the Supervisor on SQL storage.
 *
 * - `start_p50_ms`: `Supervisor.startSingleton` from one node, `starts` singletons one after the
 *   other, placed on every node; each returns once the name is visible on every node.
 * - failover, `trials` times: SIGKILL the node hosting the probe singleton, then time until the
 *   singleton runs again (its `life` start event) and every survivor's registry view points at the
 *   new instance (`view` events); `lookupSingleton` on each survivor must then return that ref.
 *   The killed node is restarted before the next trial (the singleton stays where it is).
 * - `lost`: trials where the singleton did not run again within `timeoutMs`;
 *   `duplicates`: pairs of instances whose lives overlapped (a killed instance ends at the kill).
 * - `facade_start_overhead_ratio`: `ProcessManager.startSingleton` against
 *   `Supervisor.startSingleton`, medians of `starts` starts each, after a warm-up: both start the
 *   same names (stopped in between), so placement is the same.
 */
import * as Effect from "effect/Effect"
import * as Processes from "../shared/processes.js"
import { median, percentile } from "../shared/stats.js"
import { Lives } from "@foundation/testing"
import {
  type BenchWorker,
  type Member,
  type WorkerEvent,
  awaitMembership,
  startWorker,
  waitFor
} from "./cluster.js"

export interface Options {
  readonly databaseUrl: string
  readonly trials: number
  readonly starts: number
  readonly timeoutMs: number
}

const probe = "failover-probe"

export const runSingleton = (options: Options) =>
  Effect.gen(function* () {
    const database = yield* Processes.temporaryDatabase(options.databaseUrl)
    const ports = yield* Processes.freePorts(6)
    const members: ReadonlyArray<Member> = [0, 1, 2].map((i) => ({
      id: `w-${i + 1}`,
      port: ports[i * 2],
      runnerPort: ports[i * 2 + 1]
    }))
    const workers = new Map<string, BenchWorker>()
    /** every worker process ever started, so that all of them are killed at the end */
    const everyWorker: Array<BenchWorker> = []
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => Promise.all(everyWorker.map((worker) => Processes.killWorker(worker.process))))
    )
    const launch = (member: Member) =>
      Effect.tap(startWorker(member, database.url), (worker) =>
        Effect.sync(() => {
          workers.set(member.id, worker)
          everyWorker.push(worker)
        })
      )
    yield* Effect.forEach(members, launch, { concurrency: "unbounded" })
    yield* awaitMembership(Array.from(workers.values()))
    yield* Effect.sleep("1 second")
    const first = workers.get("w-1")!

    yield* first.command("starts", { prefix: "warmup-", count: 10 })
    const { facade, raw } = yield* first.command<{ raw: Array<number>; facade: Array<number> }>("starts", {
      prefix: "start-",
      count: options.starts
    })
    yield* Effect.logInfo(
      `startSingleton p50 ${median(raw).toFixed(2)} ms (facade ${median(facade).toFixed(2)} ms)`
    )

    /** lives of the probe, by worker process incarnation */
    const lives: Array<Lives.Life> = []
    const lifeOf = (workerId: string, event: Extract<WorkerEvent, { type: "life" }>) => {
      if (event.phase === "start") {
        lives.push({
          worker: workerId,
          node: event.node,
          epoch: event.epoch,
          start: event.at,
          end: undefined
        })
      } else {
        const life = lives.find(
          (l) => l.worker === workerId && l.epoch === event.epoch && l.end === undefined
        )
        if (life) life.end = event.at
      }
    }
    const seen = new Map<BenchWorker, number>()
    const collect = () => {
      for (const worker of everyWorker) {
        const from = seen.get(worker) ?? 0
        for (const event of worker.events.slice(from)) {
          if (event.type === "life" && event.name === probe) lifeOf(worker.member.id, event)
        }
        seen.set(worker, worker.events.length)
      }
    }
    const views = (worker: BenchWorker) =>
      worker.events.filter((event): event is Extract<WorkerEvent, { type: "view" }> => event.type === "view")

    yield* first.command("start", { name: probe, label: "probe" })
    for (const worker of workers.values()) yield* worker.command("watch", { name: probe })

    const failovers: Array<number> = []
    let lost = 0
    for (let trial = 1; trial <= options.trials; trial++) {
      collect()
      const current = lives.find((life) => life.end === undefined)
      if (!current) {
        lost++
        yield* Effect.logWarning(`trial ${trial}: the probe runs nowhere; restarting it`)
        yield* first.command("start", { name: probe, label: "probe" })
        continue
      }
      const victim = workers.get(current.node)!
      const survivors = Array.from(workers.values()).filter((worker) => worker !== victim)
      const killedAt = Date.now()
      yield* Effect.promise(() => Processes.killWorker(victim.process))
      current.end = killedAt
      const recovered = yield* waitFor(
        `the probe after killing ${victim.member.id}`,
        () => {
          collect()
          const next = lives.find((life) => life.end === undefined && life.start >= killedAt)
          if (!next) return undefined
          const seenAt = survivors.map(
            (worker) => views(worker).find((view) => view.node === next.node && view.epoch === next.epoch)?.at
          )
          if (seenAt.some((at) => at === undefined)) return undefined
          return { next, visibleAt: Math.max(next.start, ...(seenAt as Array<number>)) }
        },
        { timeoutMs: options.timeoutMs }
      )
      if (!recovered) {
        lost++
      } else {
        const lookups = yield* Effect.forEach(survivors, (worker) =>
          worker.command<{ found: boolean; node?: string; epoch?: number }>("lookupSingleton", {
            name: probe
          })
        )
        const consistent = lookups.every(
          (ref) => ref.found && ref.node === recovered.next.node && ref.epoch === recovered.next.epoch
        )
        if (!consistent) lost++
        const ms = recovered.visibleAt - killedAt
        failovers.push(ms)
        yield* Effect.logInfo(
          `trial ${trial}: killed ${victim.member.id}; runs on ${recovered.next.node} (epoch ${recovered.next.epoch}), visible everywhere after ${ms} ms`
        )
      }
      const restarted = yield* launch(victim.member)
      yield* restarted.command("watch", { name: probe })
      yield* awaitMembership(Array.from(workers.values()))
    }
    yield* Effect.sleep("500 millis")
    collect()

    const duplicates = Lives.overlaps(lives).length
    const running = lives.filter((life) => life.end === undefined).length

    return {
      scenario: "singleton",
      nodes: 3,
      storage: "postgres",
      starts: options.starts,
      start_p50_ms: Number(median(raw).toFixed(2)),
      start_p99_ms: Number(percentile(raw, 99).toFixed(2)),
      facade_start_p50_ms: Number(median(facade).toFixed(2)),
      facade_start_overhead_ratio: Number((median(facade) / median(raw) - 1).toFixed(4)),
      trials: options.trials,
      failover_visible_everywhere_p50_ms: median(failovers),
      failover_visible_everywhere_max_ms: Math.max(...failovers),
      failover_samples_ms: failovers,
      lost,
      duplicates,
      running_at_end: running
    }
  }).pipe(Effect.scoped)
