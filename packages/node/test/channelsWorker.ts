/**
 * A node process for `channels.test.ts`: a Foundation node on Postgres with Channels and
 * SharedConfig. It prints one JSON line per event on stdout:
 * - `{"ready":true}` once its subscriptions are known to the nodes that are up;
 * - `{"channel","topic","from","seq","missed","message"}` for every envelope on `events`, `data`
 *   and the typed `test.orders` topic (binary fields as their length and checksum);
 * - `{"config":{"value","version","by"}}` for every change of `test.flag`.
 * Env: `WORKER_ID`, `WORKER_PORT`, `WORKER_RUNNER_PORT`, `WORKER_DATABASE_URL`, `WORKER_TABLE_PREFIX`.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Channels from "@foundation/core/Channels"
import * as SharedConfig from "@foundation/core/SharedConfig"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Stream from "effect/Stream"
import * as FoundationNode from "../src/FoundationNode.js"
import { Flag, Orders } from "./channelsFixtures.js"

const print = (value: unknown) => Effect.sync(() => process.stdout.write(`${JSON.stringify(value)}\n`))

const summary = (message: unknown): unknown => {
  if (message instanceof Uint8Array) {
    let sum = 0
    for (const byte of message) sum = (sum + byte) % 65_521
    return { bytes: message.length, sum }
  }
  if (
    typeof message === "object" &&
    message !== null &&
    !Array.isArray(message) &&
    !(message instanceof Date)
  ) {
    return Object.fromEntries(Object.entries(message).map(([key, value]) => [key, summary(value)]))
  }
  return message
}

const program = Effect.gen(function* () {
  const env = process.env
  const node = FoundationNode.layer({
    id: env.WORKER_ID!,
    port: Number(env.WORKER_PORT),
    runnerPort: Number(env.WORKER_RUNNER_PORT),
    storage: { _tag: "postgres", url: env.WORKER_DATABASE_URL! },
    tablePrefix: env.WORKER_TABLE_PREFIX
  })
  const app = Layer.scopedDiscard(
    Effect.gen(function* () {
      const channels = yield* Channels.Channels
      const config = yield* SharedConfig.SharedConfig
      const changes = yield* config.changesOf(Flag)
      yield* changes.pipe(
        Stream.runForEach((change) =>
          print({ config: { value: change.value, version: change.version, by: change.by } })
        ),
        Effect.forkScoped
      )
      const streams = [
        yield* channels.subscribe("events"),
        yield* channels.subscribe("data"),
        yield* channels.subscribe(Orders)
      ]
      for (const stream of streams) {
        yield* (stream as Stream.Stream<Channels.Envelope<unknown>>).pipe(
          Stream.runForEach((envelope) =>
            print({
              channel: envelope.channel,
              topic: envelope.topic,
              from: envelope.from,
              seq: envelope.seq,
              missed: envelope.missed,
              message: summary(envelope.message)
            })
          ),
          Effect.forkScoped
        )
      }
      yield* print({ ready: true })
    })
  ).pipe(Layer.provideMerge(Layer.merge(Channels.layer(), SharedConfig.layer())))
  yield* Layer.launch(Layer.provide(app, node))
})

NodeRuntime.runMain(program.pipe(Logger.withMinimumLogLevel(LogLevel.Warning)))
