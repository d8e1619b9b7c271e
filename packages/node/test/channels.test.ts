import { describe, expect, it } from "@effect/vitest"
import * as Channels from "@foundation/core/Channels"
import * as SharedConfig from "@foundation/core/SharedConfig"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Path from "node:path"
import * as FoundationNode from "../src/FoundationNode.js"
import * as SocketTransport from "../src/SocketTransport.js"
import { Flag, Order, Orders } from "./channelsFixtures.js"
import { freshPrefix, jsonLines, postgresUrl, sharedPostgres, spawnTs, waitUntil } from "./utils.js"

const url = postgresUrl("multi-process Channels and SharedConfig test")

const workerPath = Path.resolve(import.meta.dirname, "channelsWorker.ts")

/** A worker node process (see `channelsWorker.ts`), SIGKILLed when the scope closes if it still runs. */
const spawnWorker = (id: string, env: Record<string, string>) =>
  Effect.map(spawnTs(workerPath, [], { ...env, WORKER_ID: id }), (child) => ({ id, ...child }))

type Worker = Effect.Effect.Success<ReturnType<typeof spawnWorker>>

const envelopes = (worker: Worker) => jsonLines(worker.stdout()).filter((line) => "seq" in line)
const configs = (worker: Worker) =>
  jsonLines(worker.stdout())
    .filter((line) => "config" in line)
    .map((line) => line.config)

const checksum = (bytes: Uint8Array) => {
  let sum = 0
  for (const byte of bytes) sum = (sum + byte) % 65_521
  return sum
}

describe.skipIf(!url)("Channels and SharedConfig across node processes on PostgreSQL", () => {
  it.scopedLive(
    "broadcasts reach other processes in order (batched, chunked, compressed, typed) and a setting applies everywhere by majority",
    () =>
      Effect.gen(function* () {
        const sql = yield* sharedPostgres(url!)
        const prefix = yield* freshPrefix(sql, "fc")
        const ports = yield* SocketTransport.freePorts(6)
        const workers: Array<Worker> = []
        for (const [i, id] of ["w-1", "w-2"].entries()) {
          workers.push(
            yield* spawnWorker(id, {
              WORKER_PORT: `${ports[i * 2]}`,
              WORKER_RUNNER_PORT: `${ports[i * 2 + 1]}`,
              WORKER_DATABASE_URL: url!,
              WORKER_TABLE_PREFIX: prefix
            })
          )
        }
        const publisher = yield* FoundationNode.start(
          { id: "publisher", port: ports[4], runnerPort: ports[5], storage: sql, tablePrefix: prefix },
          Layer.merge(Channels.layer(), SharedConfig.layer())
        )
        yield* waitUntil(
          "both workers to subscribe, as the publisher sees it",
          publisher.run(
            Effect.map(
              Effect.flatMap(Channels.Channels, (channels) =>
                Effect.all([
                  channels.subscribers("foundation:events"),
                  channels.subscribers("foundation:data"),
                  channels.subscribers("test.orders")
                ])
              ),
              (views) =>
                views.every((nodes) => nodes.includes("w-1" as never) && nodes.includes("w-2" as never))
                  ? true
                  : undefined
            )
          ),
          { timeoutMs: 60_000, intervalMs: 100 }
        )

        const events = Array.from({ length: 2000 }, (_, i) => ({ i, text: `event ${i}` }))
        const blob = new Uint8Array(300_000).map((_, i) => (i * 7) % 251)
        const placedAt = new Date("2026-05-06T07:08:09Z")
        yield* publisher.run(
          Effect.gen(function* () {
            for (const event of events) yield* Channels.broadcast("events", event)
            yield* Channels.broadcast("data", { name: "blob", blob }, { compression: "gzip" })
            yield* Channels.broadcast("data", blob)
            yield* Channels.broadcast(Orders, new Order({ id: "o-1", total: 9.5, placedAt }))
          })
        )
        for (const worker of workers) {
          const received = yield* waitUntil(
            `${worker.id} to receive everything`,
            Effect.sync(() => {
              const all = envelopes(worker)
              return all.length >= events.length + 3 ? all : undefined
            }),
            { timeoutMs: 30_000, intervalMs: 100 }
          )
          const onEvents = received.filter((envelope) => envelope.channel === "events")
          expect(onEvents.map((envelope) => envelope.message)).toEqual(events)
          expect(onEvents.map((envelope) => envelope.seq)).toEqual(events.map((_, i) => i + 1))
          expect(received.every((envelope) => envelope.from === "publisher" && envelope.missed === 0)).toBe(
            true
          )
          const onData = received.filter((envelope) => envelope.channel === "data")
          expect(onData.map((envelope) => envelope.message)).toEqual([
            { name: "blob", blob: { bytes: blob.length, sum: checksum(blob) } },
            { bytes: blob.length, sum: checksum(blob) }
          ])
          const orders = received.filter((envelope) => envelope.topic === "test.orders")
          expect(orders.map((envelope) => envelope.message)).toEqual([
            { id: "o-1", total: 9.5, placedAt: placedAt.toISOString() }
          ])
        }
        const stats = yield* publisher.run(Channels.stats)
        // one copy per subscribing process, in far fewer frames than messages
        expect(stats.events.sent).toBe(2 * events.length)
        expect(stats.events.frames).toBeLessThan(events.length)

        const first = yield* publisher.run(SharedConfig.set(Flag, true))
        expect(first).toMatchObject({ value: true, version: 1, by: "publisher" })
        for (const worker of workers) {
          yield* waitUntil(
            `${worker.id} to apply the setting`,
            Effect.sync(() => (configs(worker).some((config) => config.version === 1) ? true : undefined)),
            { timeoutMs: 10_000 }
          )
          expect(configs(worker)).toEqual([{ value: true, version: 1, by: "publisher" }])
        }

        // a killed process no longer votes: the two left are a majority of two
        workers[1]!.process.kill("SIGKILL")
        yield* waitUntil(
          "the publisher to see w-2 down",
          publisher.run(
            Effect.map(
              Effect.flatMap(Channels.Channels, (channels) => channels.subscribers("foundation:events")),
              (nodes) => (nodes.includes("w-2" as never) ? undefined : true)
            )
          ),
          { timeoutMs: 10_000 }
        )
        const second = yield* publisher.run(SharedConfig.set(Flag, false))
        expect(second.version).toBe(2)
        yield* waitUntil(
          "w-1 to apply the second setting",
          Effect.sync(() => (configs(workers[0]!).some((config) => config.version === 2) ? true : undefined)),
          { timeoutMs: 10_000 }
        )
      }).pipe(Logger.withMinimumLogLevel(LogLevel.Error)),
    120_000
  )
})
