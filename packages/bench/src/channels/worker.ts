/**
 * One node process of the channels and sharedconfig benchmarks: a Foundation node on Postgres
 * (`FoundationNode.layer`) with `Channels.layer()` and `SharedConfig.layer()`. It prints
 * `FOUNDATION_BENCH_READY` when it serves, then takes one JSON command per stdin line (see
 * `protocol.ts`) and answers each with one stdout line `BENCH_REPLY {"id", "ok", "result" | "error"}`.
 * It exits when stdin closes.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Channels from "@foundation/core/Channels"
import * as Node from "@foundation/core/Node"
import * as SharedConfig from "@foundation/core/SharedConfig"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import {
  constants as PerfConstants,
  monitorEventLoopDelay,
  PerformanceObserver,
  performance
} from "node:perf_hooks"
import * as Profiler from "../rpc/profiler.js"
import { type Command, Request } from "./protocol.js"
import * as Commands from "../shared/commands.js"

const Ping = Channels.topic("bench:ping", Schema.Struct({ id: Schema.Number, from: Schema.String }), {
  channel: "control"
})
/** `echoedAt`: when the echoing node got the ping (`epochMs`), which splits the round trip in two legs */
const Pong = Channels.topic(
  "bench:pong",
  Schema.Struct({ id: Schema.Number, to: Schema.String, echoedAt: Schema.Number }),
  {
    channel: "control"
  }
)

/** The key the sharedconfig benchmark sets. */
export const BenchKey = SharedConfig.key("bench.value", Schema.Number, { default: 0 })

interface Counter {
  received: number
  missed: number
  /** when the first chunk arrived, and its size: a rate counts from there */
  firstAt: number
  firstChunk: number
  lastAt: number
}

const emptyCounter = (): Counter => ({ received: 0, missed: 0, firstAt: 0, firstChunk: 0, lastAt: 0 })

const log = (line: string) => Effect.sync(() => console.error(line))

/** Milliseconds since the epoch with sub-millisecond precision: comparable across the node processes. */
const epochMs = () => performance.timeOrigin + performance.now()

/**
 * The event-loop delay is sampled every 20 ms: a finer timer would keep waking an idle process and
 * change the idle figures it is compared with.
 */
const delayResolutionMs = 20

/**
 * This process's GC pauses (by kind) and event-loop delay while recording: where a control
 * message's time goes when the process is busy.
 */
const makeVitals = () => {
  const kinds: Record<number, string> = {
    [PerfConstants.NODE_PERFORMANCE_GC_MINOR]: "minor",
    [PerfConstants.NODE_PERFORMANCE_GC_MAJOR]: "major",
    [PerfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
    [PerfConstants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb"
  }
  let pauses: Record<string, Array<number>> = {}
  /** GC callback flags (`NODE_PERFORMANCE_GC_FLAGS_*`, e.g. 32: all external memory) and how often */
  let flagCounts: Record<number, number> = {}
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const detail = (entry as any).detail as { kind?: number; flags?: number } | undefined
      const kind = kinds[detail?.kind ?? 0] ?? "other"
      ;(pauses[kind] ??= []).push(entry.duration)
      if (detail?.flags) flagCounts[detail.flags] = (flagCounts[detail.flags] ?? 0) + 1
    }
  })
  let delay: ReturnType<typeof monitorEventLoopDelay> | undefined
  return {
    start: Effect.sync(() => {
      pauses = {}
      flagCounts = {}
      delay?.disable()
      delay = monitorEventLoopDelay({ resolution: delayResolutionMs })
      delay.enable()
      observer.observe({ entryTypes: ["gc"] })
      return {}
    }),
    stop: Effect.sync(() => {
      observer.disconnect()
      delay?.disable()
      // the histogram holds the timer's whole interval: the delay is what exceeds the resolution
      const ms = (ns: number) => Math.max(0, Math.round(ns / 1e4 - delayResolutionMs * 100) / 100)
      const gc = Object.fromEntries(
        Object.entries(pauses).map(([kind, durations]) => [
          kind,
          {
            count: durations.length,
            total_ms: Math.round(durations.reduce((sum, d) => sum + d, 0) * 100) / 100,
            max_ms: Math.round(Math.max(...durations) * 100) / 100
          }
        ])
      )
      const memory = process.memoryUsage()
      const result = {
        gc,
        gc_flags: flagCounts,
        heap_used_mb: Math.round(memory.heapUsed / 1e6),
        array_buffers_mb: Math.round(memory.arrayBuffers / 1e6),
        event_loop_delay_ms: delay
          ? { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) }
          : undefined
      }
      delay = undefined
      return result
    })
  }
}

const program = Effect.gen(function* () {
  const config = yield* Commands.clusterNodeConfig
  const scope = yield* Effect.scope
  const app = Layer.merge(Channels.layer(), SharedConfig.layer())
  const context = yield* Layer.buildWithScope(
    Layer.provideMerge(app, Commands.clusterNodeLayer(config)),
    scope
  )
  // membership changes go to stderr: a peer suspected or declared down during a run explains lost messages
  const membership = yield* Effect.flatMap(Effect.provide(Node.Node, context), (node) => node.events)
  yield* membership.pipe(
    Stream.runForEach((event) =>
      log(
        `[${config.id}] ${new Date().toISOString()} ${event._tag} ${event.node.id}` +
          (event._tag === "NodeDown" ? ` (${event.reason})` : "")
      )
    ),
    Effect.forkScoped
  )
  const channels = yield* Effect.provide(Channels.Channels, context)
  const shared = yield* Effect.provide(SharedConfig.SharedConfig, context)
  const counters = new Map<string, Counter>()
  const pongs = new Map<number, Deferred.Deferred<{ at: number; echoedAt: number }>>()
  const vitals = makeVitals()
  let flood: { fiber: Fiber.RuntimeFiber<void>; sent: number; startedAt: number } | undefined

  // every node listens for pongs addressed to it
  const pongStream = yield* channels.subscribe(Pong)
  yield* pongStream.pipe(
    Stream.runForEach((envelope) =>
      Effect.suspend(() => {
        if (envelope.message.to !== config.id) return Effect.void
        const waiting = pongs.get(envelope.message.id)
        return waiting
          ? Deferred.succeed(waiting, { at: epochMs(), echoedAt: envelope.message.echoedAt })
          : Effect.void
      })
    ),
    Effect.forkScoped
  )

  const handle = (command: Command): Effect.Effect<unknown, unknown> => {
    switch (command._tag) {
      case "Count":
        return Effect.gen(function* () {
          counters.set(command.channel, emptyCounter())
          const stream = yield* channels
            .subscribe(command.channel, { bufferSize: 100_000 })
            .pipe(Scope.extend(scope))
          yield* stream.pipe(
            Stream.runForEachChunk((chunk) =>
              Effect.sync(() => {
                const now = performance.now()
                const counter = counters.get(command.channel)!
                if (counter.received === 0) {
                  counter.firstAt = now
                  counter.firstChunk = chunk.length
                }
                counter.received += chunk.length
                for (const envelope of chunk) counter.missed += envelope.missed
                counter.lastAt = now
              })
            ),
            Effect.forkIn(scope)
          )
          return {}
        })
      case "Echo":
        return Effect.gen(function* () {
          const stream = yield* channels.subscribe(Ping).pipe(Scope.extend(scope))
          yield* stream.pipe(
            Stream.runForEach((envelope) =>
              channels.broadcast(Pong, {
                id: envelope.message.id,
                to: envelope.message.from,
                echoedAt: epochMs()
              })
            ),
            Effect.forkIn(scope)
          )
          return {}
        })
      case "Counters":
        return Effect.sync(() => {
          const counter = counters.get(command.channel) ?? emptyCounter()
          if (command.reset && counters.has(command.channel)) counters.set(command.channel, emptyCounter())
          return counter
        })
      case "AwaitSubscribers":
        return Effect.gen(function* () {
          const topic = Channels.topicMapping[command.channel]
          for (let attempt = 0; attempt < 600; attempt++) {
            const nodes = yield* channels.subscribers(topic)
            if (command.nodes.every((node) => nodes.includes(node as never))) return { nodes }
            yield* Effect.sleep(50)
          }
          return yield* Effect.fail(new Error(`subscribers of ${topic} never included ${command.nodes}`))
        })
      case "Publish":
        return Effect.gen(function* () {
          const body = "x".repeat(Math.max(0, command.size - 14))
          const startedAt = performance.now()
          for (let i = 0; i < command.count; i++) {
            yield* channels.broadcast(command.channel, { i, body })
          }
          return { publishMs: performance.now() - startedAt }
        })
      case "Pings":
        return Effect.gen(function* () {
          const rtts: Array<number> = []
          const there: Array<number> = []
          const back: Array<number> = []
          let lost = 0
          for (let id = 0; id < command.count; id++) {
            const answered = yield* Deferred.make<{ at: number; echoedAt: number }>()
            pongs.set(id, answered)
            const sentAt = epochMs()
            yield* channels.broadcast(Ping, { id, from: config.id })
            const pong = yield* Deferred.await(answered).pipe(Effect.timeout("5 seconds"), Effect.option)
            pongs.delete(id)
            if (pong._tag === "Some") {
              rtts.push(pong.value.at - sentAt)
              there.push(pong.value.echoedAt - sentAt)
              back.push(pong.value.at - pong.value.echoedAt)
            } else lost++
            yield* Effect.sleep(command.intervalMs)
          }
          return { rtts, there, back, lost }
        })
      case "RpcPings":
        return Effect.gen(function* () {
          const node = yield* Effect.provide(Node.Node, context)
          const client = yield* node.client(Node.nodeId(command.peer))
          const rtts: Array<number> = []
          for (let i = 0; i < command.count; i++) {
            const sentAt = performance.now()
            yield* client.Ping({ from: node.self.id, sentAt: Date.now() })
            rtts.push(performance.now() - sentAt)
            yield* Effect.sleep(command.intervalMs)
          }
          return { rtts, lost: 0 }
        })
      case "FloodStart":
        return Effect.gen(function* () {
          const bytes = new Uint8Array(command.size).fill(7)
          const state = {
            fiber: undefined as never as Fiber.RuntimeFiber<void>,
            sent: 0,
            startedAt: performance.now()
          }
          state.fiber = yield* Effect.gen(function* () {
            while (true) {
              yield* channels.broadcast("data", bytes)
              state.sent++
            }
          }).pipe(Effect.orDie, Effect.forkIn(scope))
          flood = state
          return {}
        })
      case "FloodStop":
        return Effect.gen(function* () {
          if (!flood) return { sent: 0, seconds: 0 }
          yield* Fiber.interrupt(flood.fiber)
          const result = { sent: flood.sent, seconds: (performance.now() - flood.startedAt) / 1000 }
          flood = undefined
          return result
        })
      case "AwaitMembers":
        return Effect.gen(function* () {
          const node = yield* Effect.provide(Node.Node, context)
          for (let attempt = 0; attempt < 600; attempt++) {
            const members = yield* node.members
            const up = members
              .filter((member) => member.status === "up")
              .map((member) => member.info.id as string)
            if (command.nodes.every((id) => up.includes(id))) return { up }
            yield* Effect.sleep(50)
          }
          return yield* Effect.fail(new Error(`not every one of ${command.nodes} came up`))
        })
      case "Sets":
        return Effect.gen(function* () {
          const latencies: Array<number> = []
          let failed = 0
          for (let i = 0; i < command.count; i++) {
            const startedAt = performance.now()
            const exit = yield* Effect.exit(shared.set(BenchKey, i + 1))
            if (exit._tag === "Success") latencies.push(performance.now() - startedAt)
            else failed++
          }
          return { latencies, failed }
        })
      case "ProfileStart":
        return Profiler.start(command.intervalUs)
      case "ProfileStop":
        return Profiler.stop(command.file)
      case "VitalsStart":
        return vitals.start
      case "VitalsStop":
        return vitals.stop
      case "Stats":
        return channels.stats
      case "ConfigEntry":
        return Effect.map(shared.entry(BenchKey), (entry) => ({ value: entry.value, version: entry.version }))
    }
  }

  yield* log(`[${config.id}] serving`)
  yield* Commands.serve(Request, handle)
})

NodeRuntime.runMain(Effect.scoped(program).pipe(Logger.withMinimumLogLevel(LogLevel.Warning)))
