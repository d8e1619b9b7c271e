import { describe, expect, it } from "@effect/vitest"
import * as Channels from "@foundation/core/Channels"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { TestCluster } from "@foundation/testing"

// small parts, so that chunking is exercised with small messages
const settings = { chunkSize: 1024, maxFrameBytes: 4096 } as const
const ChannelsLive = Channels.layer(settings)

const detector = {
  heartbeatInterval: "100 millis",
  suspectAfter: "400 millis",
  heartbeatTimeout: "1 second"
} as const

const cluster3 = Effect.tap(TestCluster.make({ nodes: 3, layer: ChannelsLive }), (cluster) =>
  cluster.awaitConverged()
)

type Cluster = TestCluster.Cluster<Channels.Channels>

/** Three converged nodes with a failure detector, frames timing out after 300 ms, and `overrides`. */
const partitionable = (overrides?: Partial<Channels.Settings>) =>
  Effect.tap(
    TestCluster.make({
      nodes: 3,
      detector,
      layer: Channels.layer({ ...settings, ackTimeout: Duration.millis(300), ...overrides })
    }),
    (cluster) => cluster.awaitConverged()
  )

const subscribeOn = (
  cluster: Cluster,
  node: string,
  target: Channels.Channel | (string & {}),
  options?: Channels.SubscribeOptions
) => cluster.on(node, Channels.subscribe(target, options))

/** Collects the first `count` envelopes of a subscription, in a fiber started now. */
const collect = <A>(stream: Stream.Stream<Channels.Envelope<A>>, count: number) =>
  Effect.fork(Effect.map(Stream.runCollect(Stream.take(stream, count)), Chunk.toReadonlyArray))

const publish = (
  cluster: Cluster,
  node: string,
  channel: Channels.Channel,
  messages: ReadonlyArray<unknown>
) =>
  cluster.on(
    node,
    Effect.forEach(messages, (message) => Channels.broadcast(channel, message), { discard: true })
  )

/** Publishes 1..`count` on `events` from node-1 and waits until node-2 received them all. */
const publishCounted = (cluster: Cluster, count: number) =>
  Effect.zipRight(
    publish(
      cluster,
      "node-1",
      "events",
      Array.from({ length: count }, (_, i) => i + 1)
    ),
    cluster.eventually(
      Effect.map(statsOn(cluster, "node-2"), (stats) => expect(stats.events.received).toBe(count))
    )
  )

const join = <A>(fiber: Fiber.Fiber<A>) => Effect.timeout(Fiber.join(fiber), "10 seconds")

const statsOn = (cluster: Cluster, node: string) => cluster.on(node, Channels.stats)

class Order extends Schema.Class<Order>("Order")({
  id: Schema.String,
  total: Schema.Number,
  placedAt: Schema.Date
}) {}

const Orders = Channels.topic("orders", Order)

describe("Channels", () => {
  it.scopedLive(
    "a broadcast reaches a subscriber on every node, its own included, exactly once and in order",
    () =>
      Effect.gen(function* () {
        const cluster = yield* cluster3
        const received = new Map<string, Array<Channels.Envelope<unknown>>>()
        for (const node of cluster.nodes) {
          const envelopes: Array<Channels.Envelope<unknown>> = []
          received.set(node, envelopes)
          const stream = yield* subscribeOn(cluster, node, "events")
          yield* stream.pipe(
            Stream.runForEach((envelope) => Effect.sync(() => envelopes.push(envelope))),
            Effect.forkScoped
          )
        }
        const messages = Array.from({ length: 200 }, (_, i) => ({ i, text: `message ${i}` }))
        yield* publish(cluster, "node-2", "events", messages)
        yield* cluster.eventually(
          Effect.sync(() => {
            for (const envelopes of received.values()) expect(envelopes.length).toBe(200)
          })
        )
        // nothing arrives twice: no further envelope within a grace period
        yield* Effect.sleep("300 millis")
        for (const envelopes of received.values()) {
          expect(envelopes.map((envelope) => envelope.message)).toEqual(messages)
          expect(envelopes.map((envelope) => envelope.seq)).toEqual(messages.map((_, i) => i + 1))
          expect(envelopes.every((envelope) => envelope.from === "node-2" && envelope.missed === 0)).toBe(
            true
          )
          expect(envelopes.every((envelope) => envelope.channel === "events")).toBe(true)
        }
      })
  )

  it.scopedLive(
    "messages from one publisher arrive in publication order per channel, across batches and chunked parts",
    () =>
      Effect.gen(function* () {
        const cluster = yield* cluster3
        const stream = yield* subscribeOn(cluster, "node-3", "data")
        const messages = Array.from({ length: 60 }, (_, i) =>
          i % 7 === 3 ? { i, blob: new Uint8Array(5000 + i).fill(i) } : { i, small: `m${i}` }
        )
        const fiber = yield* collect(stream, messages.length)
        yield* publish(cluster, "node-1", "data", messages)
        const received = yield* join(fiber)
        expect(received.map((envelope) => (envelope.message as { i: number }).i)).toEqual(
          messages.map((m) => m.i)
        )
        for (const [index, envelope] of received.entries()) {
          const sent = messages[index]!
          if ("blob" in sent) {
            const blob = (envelope.message as { blob: Uint8Array }).blob
            expect(blob.length).toBe(sent.blob.length)
            expect(blob.every((byte) => byte === index)).toBe(true)
          }
        }
        expect(received.every((envelope) => envelope.missed === 0)).toBe(true)
        // the 5 KB messages crossed in 1 KB parts
        expect((yield* statsOn(cluster, "node-1")).data.frames).toBeGreaterThan(messages.length / 7)
      })
  )

  it.scopedLive(
    "each broadcast sends one copy per subscribing node, and none to a node without a subscriber",
    () =>
      Effect.gen(function* () {
        const cluster = yield* cluster3
        const first = yield* subscribeOn(cluster, "node-2", "telemetry")
        const second = yield* subscribeOn(cluster, "node-2", "telemetry")
        const fibers = yield* Effect.all([collect(first, 10), collect(second, 10)])
        yield* publish(
          cluster,
          "node-1",
          "telemetry",
          Array.from({ length: 10 }, (_, i) => ({ type: "metric", value: i }))
        )
        for (const fiber of fibers) expect((yield* join(fiber)).length).toBe(10)
        const publisher = yield* statsOn(cluster, "node-1")
        expect(publisher.telemetry.published).toBe(10)
        expect(publisher.telemetry.sent).toBe(10)
        const subscriber = yield* statsOn(cluster, "node-2")
        expect(subscriber.telemetry.received).toBe(10)
        expect(subscriber.telemetry.delivered).toBe(20)
        const bystander = yield* statsOn(cluster, "node-3")
        expect(bystander.telemetry.received).toBe(0)
        expect(bystander.telemetry.bytesReceived).toBe(0)
      })
  )

  it.scopedLive("subscribe returns once every node knows of it; leaving the scope withdraws it", () =>
    Effect.gen(function* () {
      const cluster = yield* cluster3
      const subscribers = (node: string) =>
        cluster.on(
          node,
          Effect.flatMap(Channels.Channels, (c) => c.subscribers("foundation:control"))
        )
      expect(yield* subscribers("node-1")).toEqual([])
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* subscribeOn(cluster, "node-3", "control")
          for (const node of cluster.nodes) expect(yield* subscribers(node)).toEqual(["node-3"])
        })
      )
      yield* cluster.eventually(
        Effect.gen(function* () {
          for (const node of cluster.nodes) expect(yield* subscribers(node)).toEqual([])
        })
      )
    })
  )

  it.scopedLive("an unknown channel is a typed error listing the four channels and the raw alternative", () =>
    Effect.gen(function* () {
      const cluster = yield* cluster3
      const published = yield* Effect.flip(cluster.on("node-1", Channels.broadcast("alerts", { x: 1 })))
      expect(published).toBeInstanceOf(Channels.UnknownChannel)
      expect(published).toMatchObject({
        _tag: "UnknownChannel",
        channel: "alerts",
        available: ["control", "events", "data", "telemetry"]
      })
      expect(published.message).toContain(`Invalid channel: "alerts"`)
      expect(published.message).toContain("Available channels: control, events, data, telemetry")
      expect(published.message).toContain(`Channels.topic("your-custom-topic", schema)`)
      expect(published.message).toContain("Node.clientFor(ChannelRpcs, { lane })")
      const subscribed = yield* Effect.flip(subscribeOn(cluster, "node-1", "toString"))
      expect(subscribed).toMatchObject({ _tag: "UnknownChannel", channel: "toString" })
    })
  )

  it.effect("routing applies the seed's rules in order and explains each decision", () =>
    Effect.gen(function* () {
      const large = { blob: "x".repeat(11_000) }
      const cases: Array<[unknown, Channels.RouteOptions | undefined, Channels.Channel, string]> = [
        [{ type: "metric", value: 1 }, { priority: "high" }, "control", "High priority specified -> control"],
        [{ _tag: "telemetry", blob: large.blob }, undefined, "data", "Large message ("],
        [{ _tag: "telemetry", cpu: 0.5 }, undefined, "telemetry", "Telemetry pattern detected -> telemetry"],
        [["telemetry", { cpu: 0.5 }], undefined, "telemetry", "Telemetry pattern detected -> telemetry"],
        [
          { type: "measurement", ms: 3 },
          { priority: "low" },
          "telemetry",
          "Telemetry pattern detected -> telemetry"
        ],
        [{ user: "ada", action: "login" }, undefined, "events", "Default routing -> events"]
      ]
      for (const [message, options, channel, explanation] of cases) {
        const decision = yield* Channels.explainRouting(message, options)
        expect(decision.channel).toBe(channel)
        expect(decision.explanation).toContain(explanation)
      }
      const sized = yield* Channels.explainRouting(large)
      expect(sized.rule).toBe("size")
      // the size is the msgpack size: a 11,000-character string plus its map and key headers
      expect(sized.size).toBe(11_000 + 1 + 5 + 5)
      expect(sized.explanation).toBe(`Large message (${sized.size} bytes) -> data`)
      const threshold = yield* Channels.explainRouting("y".repeat(Channels.largeMessageBytes - 3))
      expect(threshold.size).toBe(Channels.largeMessageBytes)
      expect(threshold.channel).toBe("events")
    })
  )

  it.scopedLive("route broadcasts on the channel it picked", () =>
    Effect.gen(function* () {
      const cluster = yield* cluster3
      const streams = yield* Effect.forEach(Channels.channels, (channel) =>
        subscribeOn(cluster, "node-2", channel)
      )
      const fibers = yield* Effect.forEach(streams, (stream) => collect(stream, 1))
      const decisions = yield* cluster.on(
        "node-1",
        Effect.all([
          Channels.route({ command: "stop" }, { priority: "high" }),
          Channels.route({ order: 1 }),
          Channels.route({ type: "metric", value: 2 }),
          Channels.route({ blob: "z".repeat(20_000) })
        ])
      )
      expect(decisions.map((decision) => decision.channel)).toEqual([
        "control",
        "events",
        "telemetry",
        "data"
      ])
      const received = yield* Effect.forEach(fibers, join)
      expect(received.map(([envelope]) => envelope!.channel)).toEqual([
        "control",
        "events",
        "telemetry",
        "data"
      ])
      expect(received[0]![0]!.message).toEqual({ command: "stop" })
      expect((received[3]![0]!.message as { blob: string }).blob.length).toBe(20_000)
    })
  )

  it.scopedLive("compressed messages arrive decompressed, with fewer bytes on the wire", () =>
    Effect.gen(function* () {
      const cluster = yield* cluster3
      const stream = yield* subscribeOn(cluster, "node-2", "events")
      const fiber = yield* collect(stream, 4)
      const text = "the same sentence, over and over. ".repeat(300)
      yield* cluster.on(
        "node-1",
        Effect.all([
          Channels.broadcast("events", { text }, { compression: true }),
          Channels.broadcast("events", { text }, { compression: "gzip" }),
          Channels.broadcast("events", { n: 3 }, { compression: "deflate" }),
          Channels.broadcast("events", { text })
        ])
      )
      const received = yield* join(fiber)
      expect(received.map((envelope) => envelope.message)).toEqual([{ text }, { text }, { n: 3 }, { text }])
      expect(received.map((envelope) => envelope.seq)).toEqual([1, 2, 3, 4])
      const sent = (yield* statsOn(cluster, "node-1")).events.bytesSent
      // two compressed copies of ~10 KB and one plain: far less than three plain ones
      expect(sent).toBeLessThan(text.length * 1.5)
      expect(sent).toBeGreaterThan(text.length)
    })
  )

  it.scopedLive(
    "large byte arrays arrive byte for byte, plain or compressed, reassembled from their parts in order",
    () =>
      Effect.gen(function* () {
        const cluster = yield* cluster3
        const stream = yield* subscribeOn(cluster, "node-3", "data")
        const fiber = yield* collect(stream, 4)
        // not compressible: pseudo-random bytes
        let seed = 17
        const noisy = Uint8Array.from({ length: 200_000 }, () => {
          seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0
          return seed >>> 24
        })
        const zeros = new Uint8Array(300_000)
        const small = Uint8Array.from([1, 2, 3])
        const decision = yield* Channels.explainRouting(noisy)
        // a msgpack bin: a 5-byte header, then the bytes
        expect(decision).toMatchObject({ channel: "data", size: noisy.length + 5 })
        yield* cluster.on(
          "node-1",
          Effect.all([
            Channels.broadcast("data", noisy),
            Channels.broadcast("data", noisy, { compression: "gzip" }),
            Channels.broadcast("data", zeros, { compression: true }),
            Channels.broadcast("data", small)
          ])
        )
        const received = yield* join(fiber)
        expect(received.map((envelope) => envelope.seq)).toEqual([1, 2, 3, 4])
        expect(received.every((envelope) => envelope.missed === 0)).toBe(true)
        const bytes = received.map((envelope) => envelope.message as Uint8Array)
        expect(bytes.map((array) => array instanceof Uint8Array)).toEqual([true, true, true, true])
        expect(Array.from(bytes[0]!)).toEqual(Array.from(noisy))
        expect(Array.from(bytes[1]!)).toEqual(Array.from(noisy))
        expect(bytes[2]!.length).toBe(zeros.length)
        expect(bytes[2]!.every((byte) => byte === 0)).toBe(true)
        expect(Array.from(bytes[3]!)).toEqual([1, 2, 3])
        const data = (yield* statsOn(cluster, "node-1")).data
        // the noisy arrays crossed in 1 KB parts; the zeros compressed to a few hundred bytes
        expect(data.frames).toBeGreaterThan((2 * noisy.length) / settings.maxFrameBytes)
        expect(data.bytesSent).toBeLessThan(2 * noisy.length + 10_000)
        expect((yield* statsOn(cluster, "node-3")).data.undecodable).toBe(0)
      })
  )

  it.scopedLive(
    "a full subscriber buffer drops the oldest by default, counts it, and the subscriber sees the gap",
    () =>
      Effect.gen(function* () {
        const cluster = yield* cluster3
        const stream = yield* subscribeOn(cluster, "node-2", "events", { bufferSize: 5 })
        yield* publishCounted(cluster, 20)
        const received = yield* join(yield* collect(stream, 5))
        expect(received.map((envelope) => envelope.message)).toEqual([16, 17, 18, 19, 20])
        expect(received.map((envelope) => envelope.missed)).toEqual([0, 0, 0, 0, 0])
        expect((yield* statsOn(cluster, "node-2")).events.overflowed).toBe(15)
        // the next message after a gap in what this subscriber got says how many it missed
        const more = yield* collect(stream, 1)
        yield* publish(cluster, "node-1", "events", [21])
        expect((yield* join(more)).map((envelope) => [envelope.message, envelope.missed])).toEqual([[21, 0]])
      })
  )

  it.scopedLive("dropNewest keeps the oldest messages; the first message after the gap reports it", () =>
    Effect.gen(function* () {
      const cluster = yield* cluster3
      const stream = yield* subscribeOn(cluster, "node-2", "events", {
        bufferSize: 5,
        overflow: "dropNewest"
      })
      yield* publishCounted(cluster, 20)
      const fiber = yield* collect(stream, 6)
      yield* Effect.sleep("50 millis")
      yield* publish(cluster, "node-1", "events", [21])
      const received = yield* join(fiber)
      expect(received.map((envelope) => envelope.message)).toEqual([1, 2, 3, 4, 5, 21])
      expect(received.map((envelope) => envelope.missed)).toEqual([0, 0, 0, 0, 0, 15])
      expect((yield* statsOn(cluster, "node-2")).events.overflowed).toBe(15)
    })
  )

  it.scopedLive(
    "bulk messages sent from reused buffers arrive intact on every node, also when one node is cut off midway",
    () =>
      Effect.gen(function* () {
        const cluster = yield* partitionable({ maxQueuedBytes: 512 * 1024 })
        // large enough for a reusable body (64 KiB or more), each filled from its own index
        const bulk = (index: number) => {
          const bytes = new Uint8Array(66 * 1024)
          for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + index) % 251
          new DataView(bytes.buffer).setUint32(0, index)
          return bytes
        }
        const intact = (message: unknown) => {
          const bytes = message as Uint8Array
          const index = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0)
          return Buffer.compare(bytes.subarray(4), bulk(index).subarray(4)) === 0 ? index : -1
        }
        const second = yield* collect(yield* subscribeOn(cluster, "node-2", "data"), 40)
        const atThird: Array<number> = []
        yield* Effect.fork(
          Stream.runForEach(yield* subscribeOn(cluster, "node-3", "data"), (envelope) =>
            Effect.sync(() => atThird.push(intact(envelope.message)))
          )
        )
        yield* publish(
          cluster,
          "node-1",
          "data",
          Array.from({ length: 20 }, (_, i) => bulk(i))
        )
        yield* cluster.eventually(Effect.sync(() => expect(atThird.length).toBe(20)))
        yield* cluster.partition(["node-1", "node-2"], ["node-3"])
        yield* publish(
          cluster,
          "node-1",
          "data",
          Array.from({ length: 20 }, (_, i) => bulk(i + 20))
        )
        const atSecond = yield* join(second)
        expect(atSecond.map((envelope) => intact(envelope.message))).toEqual(
          Array.from({ length: 40 }, (_, i) => i)
        )
        expect(atThird).toEqual(Array.from({ length: 20 }, (_, i) => i))
        const atThirdStats = yield* cluster.on("node-3", Channels.stats)
        expect(atThirdStats.data.undecodable).toBe(0)
      })
  )

  it.scopedLive("messages lost in a partition are not redelivered (at most once) and show as a gap", () =>
    Effect.gen(function* () {
      const cluster = yield* partitionable()
      const stream = yield* subscribeOn(cluster, "node-2", "events")
      const fiber = yield* collect(stream, 20)
      yield* publishCounted(cluster, 10)
      yield* cluster.partition(["node-1"], ["node-2"])
      yield* publish(
        cluster,
        "node-1",
        "events",
        Array.from({ length: 10 }, (_, i) => i + 11)
      )
      yield* Effect.sleep("500 millis")
      yield* cluster.heal
      yield* cluster.awaitConverged()
      // after the heal the subscription is known again and new messages flow
      yield* cluster.eventually(
        Effect.gen(function* () {
          const subscribers = yield* cluster.on(
            "node-1",
            Effect.flatMap(Channels.Channels, (c) => c.subscribers("foundation:events"))
          )
          expect(subscribers).toContain("node-2")
        })
      )
      yield* publish(
        cluster,
        "node-1",
        "events",
        Array.from({ length: 10 }, (_, i) => i + 21)
      )
      const received = yield* join(fiber)
      expect(received.slice(0, 10).map((envelope) => envelope.message)).toEqual([
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10
      ])
      expect(received[10]!.message).toBe(21)
      expect(received[10]!.seq).toBe(21)
      expect(received[10]!.missed).toBe(10)
      expect(received.slice(10).map((envelope) => envelope.message)).toEqual(
        Array.from({ length: 10 }, (_, i) => i + 21)
      )
    })
  )

  it.scopedLive(
    "a subscriber cut off by a partition neither stops the publisher nor delays the other subscribers; its losses are counted",
    () =>
      Effect.gen(function* () {
        const cluster = yield* partitionable({ maxQueuedBytes: 2048 })
        yield* subscribeOn(cluster, "node-2", "events")
        const healthy = yield* subscribeOn(cluster, "node-3", "events")
        const fiber = yield* collect(healthy, 300)
        yield* cluster.partition(["node-1"], ["node-2"])
        const messages = Array.from({ length: 300 }, (_, i) => ({ i, padding: "p".repeat(80) }))
        yield* publish(cluster, "node-1", "events", messages).pipe(Effect.timeout("10 seconds"))
        const received = yield* join(fiber)
        expect(received.map((envelope) => envelope.message)).toEqual(messages)
        expect(received.every((envelope) => envelope.missed === 0)).toBe(true)
        const stats = (yield* statsOn(cluster, "node-1")).events
        expect(stats.undelivered).toBeGreaterThan(0)
        expect(stats.sent).toBe(stats.published * 2)
      })
  )

  it.scopedLive("a control message published after a backlog of bulk data overtakes the backlog", () =>
    Effect.gen(function* () {
      const cluster = yield* cluster3
      const data = yield* subscribeOn(cluster, "node-2", "data")
      const control = yield* subscribeOn(cluster, "node-2", "control")
      const order: Array<string> = []
      yield* data.pipe(
        Stream.runForEach((envelope) => Effect.sync(() => order.push(`data ${envelope.seq}`))),
        Effect.forkScoped
      )
      yield* control.pipe(
        Stream.runForEach(() => Effect.sync(() => order.push("control"))),
        Effect.forkScoped
      )
      const blob = new Uint8Array(64 * 1024)
      yield* cluster.on(
        "node-1",
        Effect.gen(function* () {
          for (let i = 0; i < 30; i++) yield* Channels.broadcast("data", blob)
          yield* Channels.broadcast("control", "stop")
        })
      )
      yield* cluster.eventually(Effect.sync(() => expect(order.length).toBe(31)))
      expect(order.indexOf("control")).toBeLessThan(15)
    })
  )

  it.scopedLive("bulk waits for control but is never starved by a steady stream of control messages", () =>
    Effect.gen(function* () {
      const cluster = yield* cluster3
      const data = yield* subscribeOn(cluster, "node-2", "data")
      const control = yield* subscribeOn(cluster, "node-2", "control")
      yield* Effect.forkScoped(Stream.runDrain(control))
      const fiber = yield* collect(data, 10)
      // a control message every millisecond, both ways, for as long as the data takes
      const ticker = (from: string) =>
        Effect.forkScoped(
          Effect.forever(
            Effect.zipRight(
              cluster.on(from, Channels.broadcast("control", { tick: from })),
              Effect.sleep("1 millis")
            )
          )
        )
      yield* subscribeOn(cluster, "node-1", "control").pipe(
        Effect.flatMap((stream) => Effect.forkScoped(Stream.runDrain(stream)))
      )
      yield* ticker("node-1")
      yield* ticker("node-2")
      // 8 KB each: 8 parts of 1 KB, one frame each
      const blobs = Array.from({ length: 10 }, (_, i) => new Uint8Array(8 * 1024).fill(i))
      yield* publish(cluster, "node-1", "data", blobs)
      const received = yield* join(fiber)
      expect(received.map((envelope) => (envelope.message as Uint8Array)[0])).toEqual(blobs.map((_, i) => i))
      expect(received.every((envelope) => envelope.missed === 0)).toBe(true)
    })
  )

  it.scopedLive("a typed topic decodes with its Schema on every node; a mismatched Schema is counted", () =>
    Effect.gen(function* () {
      const cluster = yield* cluster3
      const orders = yield* cluster.on("node-3", Channels.subscribe(Orders))
      const wrong = yield* cluster.on(
        "node-3",
        Channels.subscribe(Channels.topic("orders", Schema.Struct({ id: Schema.Number })))
      )
      const fiber = yield* collect(orders, 1)
      const wrongFiber = yield* Effect.fork(Stream.runCollect(Stream.take(wrong, 1)))
      const placedAt = new Date("2026-01-02T03:04:05Z")
      yield* cluster.on("node-1", Channels.broadcast(Orders, new Order({ id: "o-1", total: 42, placedAt })))
      const [envelope] = yield* join(fiber)
      expect(envelope!.message).toBeInstanceOf(Order)
      expect(envelope!.message.placedAt).toBeInstanceOf(Date)
      expect(envelope!.message.placedAt.getTime()).toBe(placedAt.getTime())
      expect(envelope!.topic).toBe("orders")
      expect(envelope!.channel).toBe("events")
      expect((yield* statsOn(cluster, "node-3")).events.undecodable).toBe(1)
      expect(wrongFiber.unsafePoll()).toBeNull()
      const invalid = yield* Effect.flip(
        cluster.on("node-1", Channels.broadcast(Channels.topic("ints", Schema.Int), 1.5))
      )
      expect(invalid).toMatchObject({ _tag: "InvalidMessage", topic: "ints" })
    })
  )

  it.scopedLive(
    "a crashed subscriber's node is dropped from the view and does not hold up the publisher",
    () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.make({ nodes: 3, detector, layer: ChannelsLive })
        yield* cluster.awaitConverged()
        yield* subscribeOn(cluster, "node-3", "events")
        const survivor = yield* subscribeOn(cluster, "node-2", "events")
        const fiber = yield* collect(survivor, 1)
        yield* cluster.crash("node-3")
        yield* cluster.eventually(
          Effect.gen(function* () {
            const subscribers = yield* cluster.on(
              "node-1",
              Effect.flatMap(Channels.Channels, (c) => c.subscribers("foundation:events"))
            )
            expect(subscribers).toEqual(["node-2"])
          })
        )
        yield* publish(cluster, "node-1", "events", ["after"])
        expect((yield* join(fiber))[0]!.message).toBe("after")
      })
  )
})
