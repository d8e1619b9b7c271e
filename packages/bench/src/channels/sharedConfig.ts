/**
 * The sharedconfig benchmark, 3 node processes on loopback and Postgres: `node-1` runs `sets`
 * sequential `SharedConfig.set` calls (after a warm-up of `warmup`), each a prepare round and a
 * commit round to a majority on the control lane; the figures are their latencies. It then checks
 * that every node holds the last value at the last version.
 */
import * as Effect from "effect/Effect"
import * as os from "node:os"
import { percentile } from "../shared/stats.js"
import { log, request, round, startCluster } from "./cluster.js"

export interface SharedConfigOptions {
  readonly databaseUrl: string
  readonly sets: number
  readonly warmup: number
}

interface Sets {
  readonly latencies: ReadonlyArray<number>
  readonly failed: number
}

export const runSharedConfig = (options: SharedConfigOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const loadAtStart = os.loadavg()[0]!
      const workers = yield* startCluster(options.databaseUrl)
      const [a] = workers
      // every node must see the others before a set can count them
      yield* request(a, { _tag: "AwaitMembers", nodes: ["node-1", "node-2", "node-3"] })
      const warm = yield* request<Sets>(a, { _tag: "Sets", count: options.warmup })
      const measured = yield* request<Sets>(a, { _tag: "Sets", count: options.sets })
      const total = options.warmup + options.sets
      const held = yield* Effect.forEach(workers, (worker) =>
        Effect.gen(function* () {
          for (let attempt = 0; attempt < 50; attempt++) {
            const entry = yield* request<{ value: number; version: number }>(worker, { _tag: "ConfigEntry" })
            if (entry.version >= total - warm.failed - measured.failed) return { node: worker.id, ...entry }
            yield* Effect.sleep(100)
          }
          const entry = yield* request<{ value: number; version: number }>(worker, { _tag: "ConfigEntry" })
          return { node: worker.id, ...entry }
        })
      )
      const p50 = percentile(measured.latencies, 50)
      const p99 = percentile(measured.latencies, 99)
      yield* log(
        `[sharedconfig] ${measured.latencies.length} sets: p50 ${round(p50, 3)} ms, p99 ${round(p99, 3)} ms, ` +
          `failed ${measured.failed}; held: ${held.map((h) => `${h.node} v${h.version}=${h.value}`).join(", ")}`
      )
      return {
        scenario: "sharedconfig",
        set_p50_ms: round(p50, 3),
        set_p99_ms: round(p99, 3),
        set_max_ms: round(Math.max(...measured.latencies), 3),
        sets: measured.latencies.length,
        failed: measured.failed + warm.failed,
        // the last set wrote `sets` (each Sets run counts from 1), at version `warmup + sets`
        converged: held.every((h) => h.value === options.sets && h.version === total),
        held,
        host_loadavg_1m: [round(loadAtStart, 2), round(os.loadavg()[0]!, 2)],
        host_cpus: os.cpus().length
      }
    })
  )
