import { describe, expect, it } from "@effect/vitest"
import * as Registry from "@foundation/core/Registry"
import * as RegistryStorage from "@foundation/core/RegistryStorage"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { TestCluster } from "@foundation/testing"

const detector = {
  heartbeatInterval: "100 millis",
  suspectAfter: "400 millis",
  heartbeatTimeout: "1 second"
} as const

/** A cluster whose nodes share one in-memory registry storage (`store`, returned for inspection). */
const registryCluster = (nodes = 3, settings?: Registry.SettingsInput) =>
  Effect.gen(function* () {
    const store = RegistryStorage.makeMemoryStore()
    const cluster = yield* TestCluster.make({
      nodes,
      detector,
      layer: Registry.layer(settings).pipe(Layer.provide(RegistryStorage.layerMemory(store)))
    })
    yield* cluster.awaitConverged()
    return { cluster, store }
  })

type Cluster = TestCluster.Cluster<Registry.Registry>

const lookupOn = (cluster: Cluster, node: string, name: string) =>
  cluster.on(
    node,
    Effect.flatMap(Registry.Registry, (registry) => registry.lookup(name))
  )

/** Registers `name` on `node` in a scope of its own, returned so the test can close it. */
const registerOn = (cluster: Cluster, node: string, name: string, metadata: Registry.Metadata = {}) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const entry = yield* cluster
      .on(
        node,
        Effect.flatMap(Registry.Registry, (registry) => registry.register(name, metadata))
      )
      .pipe(Scope.extend(scope))
    return { entry, scope }
  })

describe("Registry", () => {
  it.scopedLive("a name registered on node-1 is visible on node-2 and node-3 when register returns", () =>
    Effect.gen(function* () {
      const { cluster } = yield* registryCluster()
      for (let i = 0; i < 20; i++) {
        const { entry } = yield* registerOn(cluster, "node-1", `service-${i}`, { i })
        for (const node of ["node-2", "node-3"]) {
          const seen = yield* lookupOn(cluster, node, `service-${i}`)
          expect(Option.getOrThrow(seen).claim).toBe(entry.claim)
        }
      }
      const seen = Option.getOrThrow(yield* lookupOn(cluster, "node-3", "service-7"))
      expect(seen.node).toBe("node-1")
      expect(seen.address.toString()).toBe("node-1:2")
      expect(seen.metadata).toEqual({ i: 7 })
    })
  )

  it.scopedLive(
    "under bulk registration, with many batches in flight per node, each name is visible on every node when its register returns",
    () =>
      Effect.gen(function* () {
        // small batches, so that several are stored and pushed while earlier ones await their acks
        const { cluster } = yield* registryCluster(3, { maxBatch: 25 })
        const scope = yield* Scope.make()
        const missing: Array<string> = []
        yield* Effect.forEach(
          cluster.nodes,
          (node) =>
            Effect.forEach(
              Array.from({ length: 400 }, (_, i) => `${node}-bulk-${i}`),
              (name) =>
                Effect.gen(function* () {
                  const entry = yield* cluster
                    .on(
                      node,
                      Effect.flatMap(Registry.Registry, (registry) => registry.register(name))
                    )
                    .pipe(Scope.extend(scope))
                  for (const other of cluster.nodes) {
                    const seen = yield* lookupOn(cluster, other, name)
                    if (Option.getOrUndefined(seen)?.claim !== entry.claim)
                      missing.push(`${name} on ${other}`)
                  }
                }),
              { concurrency: 200, discard: true }
            ),
          { concurrency: "unbounded", discard: true }
        )
        expect(missing).toEqual([])
        for (const node of cluster.nodes) {
          expect(
            yield* cluster.on(
              node,
              Effect.flatMap(Registry.Registry, (registry) => registry.count)
            )
          ).toBe(1200)
        }
      })
  )

  it.scopedLive(
    "concurrent registrations of a name from every node: exactly one wins, each loser gets AlreadyRegistered carrying the winner",
    () =>
      Effect.gen(function* () {
        const { cluster, store } = yield* registryCluster()
        const names = Array.from({ length: 30 }, (_, i) => `contested-${i}`)
        const scope = yield* Scope.make()
        const attempts = yield* Effect.forEach(
          names.flatMap((name) => cluster.nodes.flatMap((node) => [0, 1].map(() => ({ name, node })))),
          ({ name, node }) =>
            cluster
              .on(
                node,
                Effect.flatMap(Registry.Registry, (registry) => registry.register(name))
              )
              .pipe(Scope.extend(scope), Effect.either),
          { concurrency: "unbounded" }
        )
        for (const name of names) {
          const results = attempts.filter((_, index) => Math.floor(index / 6) === names.indexOf(name))
          const winners = results.flatMap((result) => (result._tag === "Right" ? [result.right] : []))
          expect(winners.length).toBe(1)
          const losers = results.flatMap((result) => (result._tag === "Left" ? [result.left] : []))
          expect(losers.length).toBe(5)
          for (const loser of losers) {
            expect(loser._tag).toBe("AlreadyRegistered")
            if (loser._tag === "AlreadyRegistered") expect(loser.winner.claim).toBe(winners[0].claim)
          }
          expect(store.rows.get(name)?.claim).toBe(winners[0].claim)
          for (const node of cluster.nodes) {
            expect(Option.getOrThrow(yield* lookupOn(cluster, node, name)).claim).toBe(winners[0].claim)
          }
        }
      })
  )

  it.scopedLive("closing the registering scope releases the name on every node before close returns", () =>
    Effect.gen(function* () {
      const { cluster, store } = yield* registryCluster()
      const { scope } = yield* registerOn(cluster, "node-2", "job")
      yield* Scope.close(scope, Exit.void)
      for (const node of cluster.nodes) expect(yield* lookupOn(cluster, node, "job")).toEqual(Option.none())
      expect(store.rows.has("job")).toBe(false)
      const { entry } = yield* registerOn(cluster, "node-3", "job")
      expect(entry.node).toBe("node-3")
      yield* cluster.on(
        "node-3",
        Effect.flatMap(Registry.Registry, (registry) => registry.unregister("job"))
      )
      for (const node of cluster.nodes) expect(yield* lookupOn(cluster, node, "job")).toEqual(Option.none())
    })
  )

  it.scopedLive(
    "the names of a crashed node disappear from every survivor and from storage, and can be registered again",
    () =>
      Effect.gen(function* () {
        const { cluster, store } = yield* registryCluster()
        for (let i = 0; i < 10; i++) yield* registerOn(cluster, "node-2", `n2-${i}`)
        const { entry: kept } = yield* registerOn(cluster, "node-1", "n1-kept")
        yield* cluster.crash("node-2")
        yield* cluster.eventually(
          Effect.forEach(["node-1", "node-3"], (node) =>
            Effect.map(
              cluster.on(
                node,
                Effect.flatMap(Registry.Registry, (registry) =>
                  registry.select((entry) => entry.node === "node-2")
                )
              ),
              (left) => expect(left).toEqual([])
            )
          ),
          { timeout: "5 seconds" }
        )
        yield* cluster.eventually(
          Effect.sync(() =>
            expect(Array.from(store.rows.values()).filter((row) => row.node === "node-2")).toEqual([])
          )
        )
        expect(Option.getOrThrow(yield* lookupOn(cluster, "node-3", "n1-kept")).claim).toBe(kept.claim)
        const { entry } = yield* registerOn(cluster, "node-3", "n2-4")
        expect(Option.getOrThrow(yield* lookupOn(cluster, "node-1", "n2-4")).claim).toBe(entry.claim)
      })
  )

  it.scopedLive(
    "a node that restarts sees every name registered before and while it was down, and its old names are gone",
    () =>
      Effect.gen(function* () {
        const { cluster } = yield* registryCluster()
        yield* registerOn(cluster, "node-1", "before")
        yield* registerOn(cluster, "node-3", "mine-before-crash")
        yield* cluster.crash("node-3")
        yield* registerOn(cluster, "node-2", "while-down")
        yield* cluster.restart("node-3")
        expect(Option.isSome(yield* lookupOn(cluster, "node-3", "before"))).toBe(true)
        expect(Option.isSome(yield* lookupOn(cluster, "node-3", "while-down"))).toBe(true)
        yield* cluster.awaitConverged()
        for (const node of cluster.nodes) {
          expect(yield* lookupOn(cluster, node, "mine-before-crash")).toEqual(Option.none())
        }
        // and the restarted node is a full member again: its registrations reach everyone
        yield* registerOn(cluster, "node-3", "after-restart")
        for (const node of cluster.nodes) {
          expect(Option.isSome(yield* lookupOn(cluster, node, "after-restart"))).toBe(true)
        }
      })
  )

  it.scopedLive(
    "updateMetadata is visible everywhere when it returns; only the registering node may change a name",
    () =>
      Effect.gen(function* () {
        const { cluster } = yield* registryCluster()
        yield* registerOn(cluster, "node-1", "cache", { size: 1 })
        const updated = yield* cluster.on(
          "node-1",
          Effect.flatMap(Registry.Registry, (registry) => registry.updateMetadata("cache", { size: 2 }))
        )
        expect(updated.metadata).toEqual({ size: 2 })
        for (const node of cluster.nodes) {
          expect(Option.getOrThrow(yield* lookupOn(cluster, node, "cache")).metadata).toEqual({ size: 2 })
        }
        const error = yield* cluster
          .on(
            "node-2",
            Effect.flatMap(Registry.Registry, (registry) => registry.updateMetadata("cache", { size: 3 }))
          )
          .pipe(Effect.flip)
        expect(error._tag).toBe("NotRegistered")
        expect(error.message).toContain("registered by node node-1")
      })
  )

  it.scopedLive("select, match, count and keys answer from the local view", () =>
    Effect.gen(function* () {
      const { cluster } = yield* registryCluster()
      yield* registerOn(cluster, "node-1", "a", { role: "worker", zone: { id: 1 } })
      yield* registerOn(cluster, "node-2", "b", { role: "worker", zone: { id: 2 } })
      yield* registerOn(cluster, "node-3", "c", { role: "leader" })
      const [matched, deep, selected, count, keys] = yield* cluster.on(
        "node-2",
        Effect.flatMap(Registry.Registry, (registry) =>
          Effect.all([
            registry.match({ role: "worker" }),
            registry.match({ zone: { id: 2 } }),
            registry.select((entry) => entry.node !== "node-2"),
            registry.count,
            registry.keys
          ])
        )
      )
      expect(matched.map((entry) => entry.name).sort()).toEqual(["a", "b"])
      expect(deep.map((entry) => entry.name)).toEqual(["b"])
      expect(selected.map((entry) => entry.name).sort()).toEqual(["a", "c"])
      expect(count).toBe(3)
      expect([...keys].sort()).toEqual(["a", "b", "c"])
    })
  )

  it.scopedLive("watch emits the current entry, then every registration, update and release", () =>
    Effect.gen(function* () {
      const { cluster } = yield* registryCluster()
      const seen = yield* cluster
        .on(
          "node-3",
          Effect.flatMap(Registry.Registry, (registry) =>
            registry
              .watch("svc")
              .pipe(
                Stream.take(4),
                Stream.map(Option.map((entry) => `${entry.node}:${JSON.stringify(entry.metadata)}`)),
                Stream.runCollect
              )
          )
        )
        .pipe(Effect.fork)
      yield* Effect.sleep("50 millis")
      const { scope } = yield* registerOn(cluster, "node-1", "svc", { v: 1 })
      yield* cluster.on(
        "node-1",
        Effect.flatMap(Registry.Registry, (registry) => registry.updateMetadata("svc", { v: 2 }))
      )
      yield* Scope.close(scope, Exit.void)
      const events = Chunk.toReadonlyArray(yield* Fiber.join(seen).pipe(Effect.timeout("5 seconds")))
      expect(events).toEqual([
        Option.none(),
        Option.some('node-1:{"v":1}'),
        Option.some('node-1:{"v":2}'),
        Option.none()
      ])
    })
  )

  it.scopedLive(
    "a partitioned node's names are dropped by the majority once it is declared down, and come back on heal while it still holds them",
    () =>
      Effect.gen(function* () {
        const { cluster } = yield* registryCluster()
        yield* registerOn(cluster, "node-1", "isolated-1")
        const { scope: released } = yield* registerOn(cluster, "node-1", "isolated-2")
        const majorityNames = yield* Effect.forEach(["node-2", "node-3"], (node) =>
          Effect.as(registerOn(cluster, node, `held-by-${node}`), `held-by-${node}`)
        )
        yield* cluster.partition(["node-1"], ["node-2", "node-3"])
        yield* cluster.eventually(
          Effect.forEach(["node-2", "node-3"], (node) =>
            Effect.map(lookupOn(cluster, node, "isolated-1"), (seen) => expect(seen).toEqual(Option.none()))
          ),
          { timeout: "5 seconds" }
        )
        // node-1 still holds its names; one is released during the partition
        expect(Option.isSome(yield* lookupOn(cluster, "node-1", "isolated-1"))).toBe(true)
        yield* Scope.close(released, Exit.void).pipe(cluster.run)
        yield* cluster.heal
        yield* cluster.awaitConverged()
        yield* cluster.eventually(
          Effect.forEach(cluster.nodes, (node) =>
            Effect.all([lookupOn(cluster, node, "isolated-1"), lookupOn(cluster, node, "isolated-2")]).pipe(
              Effect.map(([kept, gone]) => {
                expect(Option.getOrThrow(kept).node).toBe("node-1")
                expect(gone).toEqual(Option.none())
              })
            )
          ),
          { timeout: "5 seconds" }
        )
        // on heal, node-1 regains a majority before it hears from both peers and may evict the other
        // one for a moment: that node's names must survive it
        yield* cluster.eventually(
          Effect.forEach(cluster.nodes, (node) =>
            Effect.forEach(majorityNames, (name) =>
              Effect.map(lookupOn(cluster, node, name), (seen) => expect(Option.isSome(seen)).toBe(true))
            )
          ),
          { timeout: "5 seconds" }
        )
      })
  )
})
