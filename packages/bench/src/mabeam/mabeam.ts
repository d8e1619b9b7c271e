/**
 * The mabeam benchmark: 3 node processes (`worker.ts`) on loopback and a throwaway Postgres
 * database, `agents` agents (default 1000) registered from node-1 and placed by the engine across
 * the 3 nodes; node-1 then runs, one after the other, sealed-bid second-price auctions, majority
 * votes and English auctions among all of them, and reports the wall time of each run (p50, p99).
 * Every run's result is checked (winner, payment, decision, every agent answered); a run that fails
 * the check is counted in `failed_runs`. Every worker is killed at the end.
 */
import * as Effect from "effect/Effect"
import * as os from "node:os"
import { fileURLToPath } from "node:url"
import * as Commands from "../shared/commands.js"
import { median, percentile } from "../shared/stats.js"
import type { Command } from "./protocol.js"

const workerPath = fileURLToPath(new URL("./worker.ts", import.meta.url))

export interface MabeamOptions {
  readonly databaseUrl: string
  readonly agents: number
  /** measured sealed-bid auctions and votes */
  readonly runs: number
  /** measured English auctions */
  readonly englishRuns: number
}

interface Measured {
  readonly latencies: ReadonlyArray<number>
  readonly failed: number
  readonly problems: ReadonlyArray<string>
}

const log = (line: string) => Effect.sync(() => console.error(line))
const round = (value: number, digits = 2) => Number(value.toFixed(digits))

const request = <A>(worker: Commands.CommandWorker, command: Command): Effect.Effect<A, Error> =>
  Commands.request<A>(worker, command)

const summary = (name: string, measured: Measured) =>
  Effect.as(
    log(
      `[mabeam] ${name}: p50 ${round(median(measured.latencies))} ms, p99 ${round(percentile(measured.latencies, 99))} ms` +
        ` over ${measured.latencies.length} runs, ${measured.failed} failed${measured.problems.length > 0 ? `: ${measured.problems.join("; ")}` : ""}`
    ),
    measured
  )

export const runMabeam = (options: MabeamOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const loadAtStart = os.loadavg()[0]!
      const [coordinator] = yield* Commands.startNodeCluster(options.databaseUrl, workerPath)
      yield* request(coordinator, { _tag: "AwaitMembers", nodes: ["node-1", "node-2", "node-3"] })
      yield* log(`[mabeam] 3 node processes up; registering ${options.agents} agents from node-1`)
      const registered = yield* request<{
        registeredMs: number
        startedMs: number
        perNode: Record<string, number>
      }>(coordinator, { _tag: "Register", count: options.agents })
      yield* log(
        `[mabeam] registered in ${Math.round(registered.registeredMs)} ms, started in ${Math.round(registered.startedMs)} ms; agents per node: ${JSON.stringify(registered.perNode)}`
      )
      const warmUp = Math.max(3, Math.round(options.runs / 10))
      yield* request(coordinator, { _tag: "Sealed", runs: warmUp })
      yield* request(coordinator, { _tag: "Consensus", runs: warmUp })
      yield* request(coordinator, { _tag: "English", runs: 1 })
      const sealed = yield* summary(
        "sealed-bid",
        yield* request<Measured>(coordinator, { _tag: "Sealed", runs: options.runs })
      )
      const consensus = yield* summary(
        "consensus",
        yield* request<Measured>(coordinator, { _tag: "Consensus", runs: options.runs })
      )
      const englishRuns = yield* summary(
        "english",
        yield* request<Measured>(coordinator, { _tag: "English", runs: options.englishRuns })
      )
      return {
        scenario: "mabeam",
        sealed_bid_p50_ms: round(median(sealed.latencies)),
        english_p50_ms: round(median(englishRuns.latencies)),
        consensus_p50_ms: round(median(consensus.latencies)),
        sealed_bid_p99_ms: round(percentile(sealed.latencies, 99)),
        english_p99_ms: round(percentile(englishRuns.latencies, 99)),
        consensus_p99_ms: round(percentile(consensus.latencies, 99)),
        targets_ms: { sealed_bid_p50: 100, consensus_p50: 100 },
        agents: options.agents,
        agents_per_node: registered.perNode,
        runs: { sealed_bid: options.runs, consensus: options.runs, english: options.englishRuns },
        failed_runs: sealed.failed + consensus.failed + englishRuns.failed,
        english_rules: "start 100, increment 50, bidders bid the minimum up to their valuation (100..1099)",
        register_ms: Math.round(registered.registeredMs),
        start_ms: Math.round(registered.startedMs),
        latency_is: "wall time of one run on node-1, from the call to its result, every agent asked",
        host_loadavg_1m: [round(loadAtStart), round(os.loadavg()[0]!)],
        cpus: os.cpus().length
      }
    })
  )
