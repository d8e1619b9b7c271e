/**
 * The channels benchmark, 3 node processes A (`node-1`), B and C on loopback and Postgres:
 * - throughput: A broadcasts `messages` messages of 100 encoded bytes on `events`; B and C each
 *   subscribe; the rate per subscriber is counted on the subscriber, from its first chunk to its
 *   last (median of `runs`, the slower subscriber of each run);
 * - control latency: A sends `pings` control messages (a typed topic on `control`) to B, one at a
 *   time, `pingIntervalMs` apart; B answers each on `control`; the figure is A's round trip;
 * - head-of-line: the same pings while A floods B with 1 MiB messages on `data` without pause.
 *   `hol_ratio` = flood p99 / idle p99.
 *
 * Alongside, for each ping series: the two legs of the round trip (A -> B and B -> A, from
 * timestamps on both sides), the GC pauses and event-loop delay of A and B (`vitals_idle`,
 * `vitals_flood`), and the flood's rate in its first second alone and while the pings ran.
 */
import * as Effect from "effect/Effect"
import * as os from "node:os"
import { performance } from "node:perf_hooks"
import * as NodePath from "node:path"
import { median, percentile } from "../shared/stats.js"
import { type BenchWorker, log, request, round, startCluster } from "./cluster.js"

export interface ChannelsOptions {
  readonly databaseUrl: string
  readonly messages: number
  readonly runs: number
  readonly pings: number
  readonly floodBytes: number
  /** the pause between two pings */
  readonly pingIntervalMs: number
  /** where to write CPU profiles of A and B during the first measured throughput run and the flood */
  readonly profileDir: string | undefined
}

interface Counter {
  readonly received: number
  readonly missed: number
  readonly firstAt: number
  readonly firstChunk: number
  readonly lastAt: number
}

/** Waits until `worker` counted `count` messages on `channel`, or nothing arrived for 5 s. */
const awaitCount = (worker: BenchWorker, channel: "events" | "data", count: number) =>
  Effect.gen(function* () {
    let last = -1
    let stalledSince = Date.now()
    while (true) {
      const counter = yield* request<Counter>(worker, { _tag: "Counters", channel, reset: false })
      if (counter.received >= count) return counter
      if (counter.received !== last) {
        last = counter.received
        stalledSince = Date.now()
      } else if (Date.now() - stalledSince > 5000) {
        return counter
      }
      yield* Effect.sleep(100)
    }
  })

const ratePerSecond = (counter: Counter) =>
  counter.lastAt > counter.firstAt
    ? ((counter.received - counter.firstChunk) / (counter.lastAt - counter.firstAt)) * 1000
    : 0

export const runChannels = (options: ChannelsOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const loadAtStart = os.loadavg()[0]!
      const [a, b, c] = yield* startCluster(options.databaseUrl)
      const subscribers = [b, c]

      // throughput
      for (const worker of subscribers) yield* request(worker, { _tag: "Count", channel: "events" })
      yield* request(a, { _tag: "AwaitSubscribers", channel: "events", nodes: ["node-2", "node-3"] })
      const runRates: Array<number> = []
      const runMissed: Array<number> = []
      const runReceived: Array<number> = []
      for (let run = 0; run <= options.runs; run++) {
        for (const worker of subscribers)
          yield* request(worker, { _tag: "Counters", channel: "events", reset: true })
        const profiled = run === 1 && options.profileDir !== undefined
        if (profiled)
          for (const worker of [a, b]) yield* request(worker, { _tag: "ProfileStart", intervalUs: 100 })
        const published = yield* request<{ publishMs: number }>(a, {
          _tag: "Publish",
          channel: "events",
          count: options.messages,
          size: 100
        })
        const counters = yield* Effect.forEach(subscribers, (worker) =>
          awaitCount(worker, "events", options.messages)
        )
        if (profiled) {
          for (const worker of [a, b]) {
            const file = NodePath.join(options.profileDir!, `throughput-${worker.id}.cpuprofile`)
            yield* request(worker, { _tag: "ProfileStop", file })
            yield* log(`[channels] profile of ${worker.id}: ${file}`)
          }
        }
        const rates = counters.map(ratePerSecond)
        const label = run === 0 ? "warm-up" : `run ${run}`
        yield* log(
          `[channels] ${label}: published ${options.messages} in ${round(published.publishMs, 0)} ms; ` +
            counters
              .map(
                (counter, i) =>
                  `${subscribers[i]!.id} got ${counter.received} (missed ${counter.missed}) at ${Math.round(rates[i]!)} msg/s`
              )
              .join("; ")
        )
        if (run === 0) {
          for (const worker of [a, b, c]) {
            const stats = yield* request<any>(worker, { _tag: "Stats" })
            yield* log(`[channels] ${worker.id} events stats: ${JSON.stringify(stats.events)}`)
          }
          continue
        }
        runRates.push(Math.min(...rates))
        runMissed.push(counters.reduce((sum, counter) => sum + counter.missed, 0))
        runReceived.push(Math.min(...counters.map((counter) => counter.received)))
      }

      const publisherEvents = (yield* request<any>(a, { _tag: "Stats" })).events
      const subscriberEvents = yield* Effect.forEach(subscribers, (worker) =>
        Effect.map(request<any>(worker, { _tag: "Stats" }), (stats) => stats.events)
      )

      // control round trips, idle then under a data flood
      yield* request(b, { _tag: "Echo" })
      yield* request(b, { _tag: "Count", channel: "data" })
      yield* request(a, { _tag: "AwaitSubscribers", channel: "data", nodes: ["node-2"] })
      const pings = (count: number) =>
        request<{ rtts: Array<number>; there: Array<number>; back: Array<number>; lost: number }>(a, {
          _tag: "Pings",
          count,
          intervalMs: options.pingIntervalMs
        })
      // GC pauses and event-loop delay of A and B over each ping series: where the time goes
      const measured = <A>(series: Effect.Effect<A, Error>) =>
        Effect.gen(function* () {
          for (const worker of [a, b]) yield* request(worker, { _tag: "VitalsStart" })
          const result = yield* series
          const vitals: Record<string, unknown> = {}
          for (const worker of [a, b]) vitals[worker.id] = yield* request(worker, { _tag: "VitalsStop" })
          return [result, vitals] as const
        })
      yield* pings(200)
      const [idle, idleVitals] = yield* measured(pings(options.pings))
      // the same round trip as a plain node RPC call: what the transport alone costs here and now
      const rpc = yield* request<{ rtts: Array<number> }>(a, {
        _tag: "RpcPings",
        peer: "node-2",
        count: options.pings,
        intervalMs: options.pingIntervalMs
      })
      yield* log(
        `[channels] idle node RPC round trip (baseline): p50 ${round(percentile(rpc.rtts, 50), 3)} ms, p99 ${round(percentile(rpc.rtts, 99), 3)} ms`
      )
      yield* log(
        `[channels] idle control round trip: p50 ${round(percentile(idle.rtts, 50), 3)} ms, p99 ${round(percentile(idle.rtts, 99), 3)} ms (lost ${idle.lost})`
      )
      yield* request(b, { _tag: "Counters", channel: "data", reset: true })
      yield* request(a, { _tag: "FloodStart", size: options.floodBytes })
      const floodStartedAt = performance.now()
      yield* Effect.sleep(1000)
      // the flood's rate is also taken apart: alone (its first second) and while the pings run
      const aloneCounter = yield* request<Counter>(b, { _tag: "Counters", channel: "data", reset: false })
      const pingsStartedAt = performance.now()
      if (options.profileDir !== undefined) {
        for (const worker of [a, b]) yield* request(worker, { _tag: "ProfileStart", intervalUs: 100 })
      }
      const [flooded, floodVitals] = yield* measured(pings(options.pings))
      const pingsCounter = yield* request<Counter>(b, { _tag: "Counters", channel: "data", reset: false })
      const pingsEndedAt = performance.now()
      if (options.profileDir !== undefined) {
        for (const worker of [a, b]) {
          const file = NodePath.join(options.profileDir, `flood-${worker.id}.cpuprofile`)
          yield* request(worker, { _tag: "ProfileStop", file })
          yield* log(`[channels] profile of ${worker.id} under the flood: ${file}`)
        }
      }
      const flood = yield* request<{ sent: number; seconds: number }>(a, { _tag: "FloodStop" })
      const dataCounter = yield* request<Counter>(b, { _tag: "Counters", channel: "data", reset: false })
      const floodMBs = (dataCounter.received * options.floodBytes) / 1e6 / Math.max(0.001, flood.seconds)
      const megabytes = (messages: number) => (messages * options.floodBytes) / 1e6
      const aloneMBs = megabytes(aloneCounter.received) / ((pingsStartedAt - floodStartedAt) / 1000)
      const duringPingsMBs =
        megabytes(pingsCounter.received - aloneCounter.received) / ((pingsEndedAt - pingsStartedAt) / 1000)
      yield* log(
        `[channels] control round trip under a ${options.floodBytes}-byte flood: p50 ${round(percentile(flooded.rtts, 50), 3)} ms, ` +
          `p99 ${round(percentile(flooded.rtts, 99), 3)} ms (lost ${flooded.lost}); flood sent ${flood.sent}, ` +
          `received ${dataCounter.received} (missed ${dataCounter.missed}), ${round(floodMBs, 0)} MB/s ` +
          `(${round(aloneMBs, 0)} MB/s in its first second, alone; ${round(duringPingsMBs, 0)} MB/s while the pings ran)`
      )
      const legs = (series: { there: Array<number>; back: Array<number> }) =>
        `A -> B p50 ${round(percentile(series.there, 50), 3)} p99 ${round(percentile(series.there, 99), 3)} ms, ` +
        `B -> A p50 ${round(percentile(series.back, 50), 3)} p99 ${round(percentile(series.back, 99), 3)} ms`
      yield* log(`[channels] legs idle: ${legs(idle)}; under the flood: ${legs(flooded)}`)
      yield* log(`[channels] vitals idle: ${JSON.stringify(idleVitals)}`)
      yield* log(`[channels] vitals under the flood: ${JSON.stringify(floodVitals)}`)
      const idleP99 = percentile(idle.rtts, 99)
      const floodP99 = percentile(flooded.rtts, 99)
      return {
        scenario: "channels",
        throughput_per_subscriber_msgs_s: Math.round(median(runRates)),
        idle_p50_ms: round(percentile(idle.rtts, 50), 3),
        idle_p99_ms: round(idleP99, 3),
        flood_control_p50_ms: round(percentile(flooded.rtts, 50), 3),
        flood_control_p99_ms: round(floodP99, 3),
        hol_ratio: round(floodP99 / idleP99, 2),
        latency_is: "round trip A -> B -> A on the control channel",
        baseline_node_rpc_p50_ms: round(percentile(rpc.rtts, 50), 3),
        baseline_node_rpc_p99_ms: round(percentile(rpc.rtts, 99), 3),
        message_bytes: 100,
        messages_per_run: options.messages,
        runs_msgs_s: runRates.map(Math.round),
        runs_min_received: runReceived,
        runs_missed: runMissed,
        publisher_events_stats: publisherEvents,
        subscribers_events_overflowed: subscriberEvents.map((stats) => stats.overflowed),
        pings: options.pings,
        ping_interval_ms: options.pingIntervalMs,
        pings_lost: idle.lost + flooded.lost,
        flood_message_bytes: options.floodBytes,
        flood_messages_received: dataCounter.received,
        flood_mb_s: round(floodMBs, 0),
        flood_mb_s_alone: round(aloneMBs, 0),
        flood_mb_s_during_pings: round(duringPingsMBs, 0),
        vitals_idle: idleVitals,
        vitals_flood: floodVitals,
        host_loadavg_1m: [round(loadAtStart, 2), round(os.loadavg()[0]!, 2)],
        host_cpus: os.cpus().length
      }
    })
  )
