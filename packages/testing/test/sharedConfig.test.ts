import { describe, expect, it } from "@effect/vitest"
import * as SharedConfig from "@foundation/core/SharedConfig"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { TestCluster } from "@foundation/testing"

const detector = {
  heartbeatInterval: "100 millis",
  suspectAfter: "400 millis",
  heartbeatTimeout: "1 second"
} as const

const SharedConfigLive = SharedConfig.layer({ prepareTimeout: Duration.millis(500) })

const Checkout = SharedConfig.key("feature.checkout", Schema.Boolean, { default: false })
const Limits = SharedConfig.key("limits", Schema.Struct({ maxOrders: Schema.Int, since: Schema.Date }), {
  default: { maxOrders: 10, since: new Date(0) }
})

const make = (nodes = 3) =>
  Effect.tap(TestCluster.make({ nodes, detector, layer: SharedConfigLive }), (cluster) =>
    cluster.awaitConverged()
  )

type Cluster = TestCluster.Cluster<SharedConfig.SharedConfig>

const entryOn = <A, I>(cluster: Cluster, node: string, key: SharedConfig.Key<A, I>) =>
  cluster.on(node, SharedConfig.entry(key))

const everyNodeHolds = <A, I>(
  cluster: Cluster,
  nodes: ReadonlyArray<string>,
  key: SharedConfig.Key<A, I>,
  value: A,
  version: number
) =>
  cluster.eventually(
    Effect.forEach(nodes, (node) =>
      Effect.map(entryOn(cluster, node, key), (entry) => {
        expect(entry.value).toEqual(value)
        expect(entry.version).toBe(version)
      })
    ),
    { timeout: "8 seconds" }
  )

describe("SharedConfig", () => {
  it.scopedLive(
    "a set returns once a majority applied it, and every node converges to its value and version",
    () =>
      Effect.gen(function* () {
        const cluster = yield* make()
        expect(yield* entryOn(cluster, "node-2", Checkout)).toMatchObject({ value: false, version: 0 })
        const entry = yield* cluster.on("node-1", SharedConfig.set(Checkout, true))
        expect(entry).toMatchObject({ key: "feature.checkout", value: true, version: 1, by: "node-1" })
        const holding = yield* Effect.filter(cluster.nodes, (node) =>
          Effect.map(entryOn(cluster, node, Checkout), (held) => held.version === 1)
        )
        expect(holding.length).toBeGreaterThanOrEqual(2)
        expect(holding).toContain("node-1")
        yield* everyNodeHolds(cluster, cluster.nodes, Checkout, true, 1)
      })
  )

  it.scopedLive(
    "versions grow with every change, whichever node makes it, and every node sees them in order",
    () =>
      Effect.gen(function* () {
        const cluster = yield* make()
        const watchers = yield* Effect.forEach(cluster.nodes, (node) =>
          Effect.flatMap(cluster.on(node, SharedConfig.changesOf(Checkout)), (changes) =>
            Effect.fork(Stream.runCollect(Stream.take(changes, 3)))
          )
        )
        const versions: Array<number> = []
        for (const [node, value] of [
          ["node-1", true],
          ["node-2", false],
          ["node-3", true]
        ] as const) {
          versions.push((yield* cluster.on(node, SharedConfig.set(Checkout, value))).version)
        }
        expect(versions).toEqual([1, 2, 3])
        for (const watcher of watchers) {
          const changes = Chunk.toReadonlyArray(yield* Effect.timeout(Fiber.join(watcher), "5 seconds"))
          expect(changes.map((change) => [change.version, change.value, change.by])).toEqual([
            [1, true, "node-1"],
            [2, false, "node-2"],
            [3, true, "node-3"]
          ])
          expect(changes.map((change) => change.previousVersion)).toEqual([0, 1, 2])
        }
      })
  )

  it.scopedLive("concurrent sets of one key get distinct versions and every node ends on the highest", () =>
    Effect.gen(function* () {
      const cluster = yield* make()
      const results = yield* Effect.all(
        Array.from({ length: 6 }, (_, i) =>
          Effect.either(cluster.on(`node-${(i % 3) + 1}`, SharedConfig.set(Checkout, i % 2 === 0)))
        ),
        { concurrency: "unbounded" }
      )
      const applied = results.flatMap((result) => (result._tag === "Right" ? [result.right] : []))
      expect(applied.length).toBeGreaterThan(0)
      const versions = applied.map((entry) => `${entry.version}@${entry.by}`)
      expect(new Set(versions).size).toBe(versions.length)
      const final = yield* entryOn(cluster, "node-1", Checkout)
      yield* everyNodeHolds(cluster, cluster.nodes, Checkout, final.value, final.version)
      const top = yield* Effect.forEach(cluster.nodes, (node) => entryOn(cluster, node, Checkout))
      expect(new Set(top.map((entry) => entry.by)).size).toBe(1)
      expect(final.version).toBe(Math.max(...applied.map((entry) => entry.version)))
    })
  )

  it.scopedLive(
    "without a majority, set fails with NoQuorum and no node changes, not even after the heal",
    () =>
      Effect.gen(function* () {
        const cluster = yield* make()
        yield* cluster.on("node-2", SharedConfig.set(Checkout, true))
        yield* everyNodeHolds(cluster, cluster.nodes, Checkout, true, 1)
        yield* cluster.partition(["node-1"], ["node-2", "node-3"])
        const error = yield* Effect.flip(cluster.on("node-1", SharedConfig.set(Checkout, false)))
        expect(error).toBeInstanceOf(SharedConfig.NoQuorum)
        expect(error).toMatchObject({
          _tag: "NoQuorum",
          key: "feature.checkout",
          accepted: ["node-1"],
          voters: 3,
          required: 2
        })
        expect([...(error as SharedConfig.NoQuorum).unreachable].sort()).toEqual(["node-2", "node-3"])
        expect(error.message).toContain("1 of 3 voting members accepted (2 needed)")
        for (const node of cluster.nodes) {
          expect(yield* entryOn(cluster, node, Checkout)).toMatchObject({ value: true, version: 1 })
        }
        yield* cluster.heal
        yield* cluster.awaitConverged()
        yield* Effect.sleep("500 millis")
        for (const node of cluster.nodes) {
          expect(yield* entryOn(cluster, node, Checkout)).toMatchObject({ value: true, version: 1 })
        }
      })
  )

  it.scopedLive(
    "the majority side of a partition can change a setting; the other side converges after the heal",
    () =>
      Effect.gen(function* () {
        const cluster = yield* make()
        yield* cluster.partition(["node-1"], ["node-2", "node-3"])
        const entry = yield* cluster.on("node-3", SharedConfig.set(Checkout, true))
        expect(entry.version).toBe(1)
        yield* everyNodeHolds(cluster, ["node-2", "node-3"], Checkout, true, 1)
        expect(yield* entryOn(cluster, "node-1", Checkout)).toMatchObject({ value: false, version: 0 })
        yield* cluster.heal
        yield* everyNodeHolds(cluster, cluster.nodes, Checkout, true, 1)
        // the healed node proposes above what it learned
        expect((yield* cluster.on("node-1", SharedConfig.set(Checkout, false))).version).toBe(2)
        yield* everyNodeHolds(cluster, cluster.nodes, Checkout, false, 2)
      })
  )

  it.scopedLive("a crashed node stops voting, and gets the current values when it comes back", () =>
    Effect.gen(function* () {
      const cluster = yield* make()
      yield* cluster.crash("node-3")
      yield* cluster.awaitConverged()
      yield* cluster.crash("node-2")
      yield* cluster.awaitConverged()
      // node-1 alone: the two others are known dead (connection refused), so it is a majority of one
      const entry = yield* cluster.on("node-1", SharedConfig.set(Checkout, true))
      expect(entry.version).toBe(1)
      yield* cluster.restart("node-3")
      yield* cluster.awaitConverged()
      yield* everyNodeHolds(cluster, ["node-1", "node-3"], Checkout, true, 1)
    })
  )

  it.scopedLive(
    "values cross nodes through their key's Schema; a value the Schema rejects is InvalidValue",
    () =>
      Effect.gen(function* () {
        const cluster = yield* make()
        const since = new Date("2026-03-01T00:00:00Z")
        yield* cluster.on("node-2", SharedConfig.set(Limits, { maxOrders: 50, since }))
        const limits = yield* cluster.eventually(
          Effect.flatMap(entryOn(cluster, "node-3", Limits), (entry) =>
            entry.version === 1 ? Effect.succeed(entry.value) : Effect.fail("not yet")
          )
        )
        expect(limits.maxOrders).toBe(50)
        expect(limits.since).toBeInstanceOf(Date)
        expect(limits.since.getTime()).toBe(since.getTime())
        const invalid = yield* Effect.flip(
          cluster.on("node-1", SharedConfig.set(Limits, { maxOrders: 1.5, since }))
        )
        expect(invalid).toMatchObject({ _tag: "InvalidValue", key: "limits" })
        expect((yield* entryOn(cluster, "node-1", Limits)).version).toBe(1)
        // the raw view: values as encoded
        const snapshot = yield* cluster.on(
          "node-1",
          Effect.flatMap(SharedConfig.SharedConfig, (config) => config.snapshot)
        )
        expect(snapshot).toEqual([
          expect.objectContaining({
            key: "limits",
            value: { maxOrders: 50, since: since.toISOString() },
            version: 1
          })
        ])
      })
  )
})
