/**
 * Foundation's `EntityHost` runs the entities of a node and carries calls straight to the owner's
 * host once the engine has routed one call there; these tests check that it does, and that it keeps
 * the engine's entity semantics: one instance per entity, requests in order with concurrency 1,
 * `MailboxFull`, idle expiry, restart and replay after a defect, and no second instance when the
 * owner dies.
 */
import * as Entity from "@effect/cluster/Entity"
import * as Rpc from "@effect/rpc/Rpc"
import { describe, expect, it } from "@effect/vitest"
import { EntityHost } from "@foundation/core"
import { TestCluster } from "@foundation/testing"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Node from "@foundation/core/Node"

const Counter = Entity.make("HostCounter", [
  Rpc.make("Add", { payload: { by: Schema.Number }, success: Schema.Number }),
  Rpc.make("Where", { success: Schema.String }),
  Rpc.make("Slow", { payload: { label: Schema.String }, success: Schema.String }),
  Rpc.make("Crash", { payload: { once: Schema.String } })
])

/** What this node's counters did: instances built, labels in the order they ran, crashes left. */
class Log extends Context.Tag("test/EntityHost/Log")<
  Log,
  { built: number; closed: number; order: Array<string>; crashed: Set<string> }
>() {}

/** Every node's instance starts and stops, in order, across the cluster. */
const lifecycle: Array<string> = []

const CounterLive = Counter.toLayer(
  Effect.gen(function* () {
    const node = yield* Node.Node
    const log = yield* Log
    const { entityId } = yield* Entity.CurrentAddress
    log.built++
    lifecycle.push(`built ${entityId} on ${node.self.id}`)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        log.closed++
        lifecycle.push(`closed ${entityId} on ${node.self.id}`)
      })
    )
    let total = 0
    return Counter.of({
      Add: ({ payload }) => Effect.sync(() => (total += payload.by)),
      Where: () => Effect.succeed(node.self.id),
      Slow: ({ payload }) =>
        Effect.sleep("20 millis").pipe(
          Effect.zipRight(Effect.sync(() => log.order.push(payload.label))),
          Effect.as(payload.label)
        ),
      Crash: ({ payload }) =>
        log.crashed.has(payload.once)
          ? Effect.void
          : Effect.sync(() => log.crashed.add(payload.once)).pipe(Effect.zipRight(Effect.die("boom")))
    })
  }),
  { maxIdleTime: "1 second", mailboxCapacity: 8, defectRetryPolicy: undefined }
).pipe(
  Layer.provideMerge(
    Layer.sync(Log, () => ({ built: 0, closed: 0, order: [] as Array<string>, crashed: new Set<string>() }))
  )
)

/** `Wait` blocks until `Release` (an `Rpc.fork` handler) opens the gate; `Die` dies. */
const Gate = Entity.make("HostGate", [
  Rpc.make("Wait", { success: Schema.String }),
  Rpc.make("Release"),
  Rpc.make("Die")
])

const GateLive = Gate.toLayer(
  Effect.gen(function* () {
    const gate = yield* Deferred.make<void>()
    return Gate.of({
      Wait: () => Effect.as(Deferred.await(gate), "released"),
      Release: () => Rpc.fork(Deferred.succeed(gate, undefined)),
      Die: () => Effect.dieMessage("gate broke")
    })
  }),
  { disableFatalDefects: true }
)

/** An entity id among c-0..c-199 whose owner is `node`, as `Where` answers from node-1. */
const idOn = (cluster: TestCluster.Cluster<Log>, node: string) =>
  cluster.on(
    "node-1",
    Effect.gen(function* () {
      const client = yield* Counter.client
      for (let index = 0; index < 200; index++) {
        if ((yield* client(`c-${index}`).Where()) === node) return `c-${index}`
      }
      return yield* Effect.dieMessage(`no entity id among c-0..c-199 lives on ${node}`)
    })
  )

const statsOn = (cluster: TestCluster.Cluster<Log>, node: string) =>
  cluster.on(
    node,
    Effect.map(EntityHost.EntityHost, (host) => ({ ...host.stats }))
  )

describe("EntityHost", () => {
  it.scopedLive("sends calls straight to the owner's host after the engine routed the first one", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 2, layer: CounterLive })
      yield* cluster.awaitConverged()
      const id = yield* idOn(cluster, "node-2")
      const before = yield* statsOn(cluster, "node-1")
      const served = (yield* statsOn(cluster, "node-2")).served
      const total = yield* cluster.on(
        "node-1",
        Effect.flatMap(Counter.client, (client) =>
          Effect.forEach(
            Array.from({ length: 50 }, () => 2),
            (by) => client(id).Add({ by })
          )
        )
      )
      expect(total.at(-1)).toBe(100)
      const after = yield* statsOn(cluster, "node-1")
      expect(after.direct - before.direct).toBe(50)
      expect(after.viaEngine).toBe(before.viaEngine)
      expect((yield* statsOn(cluster, "node-2")).served - served).toBe(50)
      // one instance, on the owner
      expect((yield* cluster.on("node-2", Log)).built).toBeGreaterThanOrEqual(1)
    })
  )

  it.scopedLive("runs an entity of this node's shards in place once the engine delivered one call here", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 2, layer: CounterLive })
      yield* cluster.awaitConverged()
      const id = yield* idOn(cluster, "node-1")
      const before = yield* statsOn(cluster, "node-1")
      const total = yield* cluster.on(
        "node-1",
        Effect.flatMap(Counter.client, (client) =>
          Effect.forEach(
            Array.from({ length: 20 }, () => 1),
            (by) => client(id).Add({ by })
          )
        )
      )
      expect(total.at(-1)).toBe(20)
      const after = yield* statsOn(cluster, "node-1")
      expect(after.served - before.served).toBe(20)
      expect(after.viaEngine).toBe(before.viaEngine)
      expect(after.direct).toBe(before.direct)
    })
  )

  it.scopedLive("runs one entity's requests one at a time, in the order they were sent", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 2, layer: CounterLive })
      yield* cluster.awaitConverged()
      const id = yield* idOn(cluster, "node-2")
      const labels = Array.from({ length: 6 }, (_, i) => `s${i}`)
      yield* cluster.on(
        "node-1",
        Effect.flatMap(Counter.client, (client) =>
          Effect.forEach(labels, (label) => client(id).Slow({ label }), { concurrency: "unbounded" })
        )
      )
      const log = yield* cluster.on("node-2", Log)
      expect(log.order).toEqual(labels)
    })
  )

  it.scopedLive("answers MailboxFull beyond mailboxCapacity, and serves the rest", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 2, layer: CounterLive })
      yield* cluster.awaitConverged()
      const id = yield* idOn(cluster, "node-2")
      const exits = yield* cluster.on(
        "node-1",
        Effect.flatMap(Counter.client, (client) =>
          Effect.forEach(
            Array.from({ length: 12 }, (_, i) => `m${i}`),
            (label) => Effect.exit(client(id).Slow({ label })),
            { concurrency: "unbounded" }
          )
        )
      )
      const full = exits.filter((exit) => Exit.isFailure(exit))
      expect(exits.filter(Exit.isSuccess).length).toBe(8)
      expect(full.length).toBe(4)
      expect(String(full[0])).toContain("MailboxFull")
    })
  )

  it.scopedLive("restarts an entity after a defect and replays the request; stops it when idle", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 2, layer: CounterLive })
      yield* cluster.awaitConverged()
      const id = yield* idOn(cluster, "node-2")
      const builtBefore = (yield* cluster.on("node-2", Log)).built
      yield* cluster.on(
        "node-1",
        Effect.flatMap(Counter.client, (client) => client(id).Crash({ once: "x" }))
      )
      const log = yield* cluster.on("node-2", Log)
      expect(log.crashed.has("x")).toBe(true)
      expect(log.built).toBe(builtBefore + 1)
      const closedBefore = log.closed
      yield* Effect.sleep("2500 millis")
      expect(log.closed).toBeGreaterThan(closedBefore)
    })
  )

  it.scopedLive("after the owner crashes, the entity answers from a survivor, built there once", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 3, layer: CounterLive })
      yield* cluster.awaitConverged()
      const id = yield* idOn(cluster, "node-2")
      yield* cluster.on(
        "node-1",
        Effect.flatMap(Counter.client, (client) => client(id).Add({ by: 1 }))
      )
      yield* cluster.crash("node-2")
      const where = yield* cluster.on(
        "node-1",
        Effect.flatMap(Counter.client, (client) => client(id).Where().pipe(Effect.timeout("10 seconds")))
      )
      expect(["node-1", "node-3"]).toContain(where)
      // the state was lost with node-2 (no persistence): a fresh instance counts from zero
      const total = yield* cluster.on(
        "node-1",
        Effect.flatMap(Counter.client, (client) => client(id).Add({ by: 5 }))
      )
      expect(total).toBe(5)
    })
  )

  it.scopedLive(
    "a node that stops finishes its entities' requests, and stops them before the next owner starts them",
    () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.make({ nodes: 2, layer: CounterLive })
        yield* cluster.awaitConverged()
        const id = yield* idOn(cluster, "node-2")
        const slow = yield* Effect.fork(
          cluster.on(
            "node-1",
            Effect.flatMap(Counter.client, (client) => client(id).Slow({ label: "in flight" }))
          )
        )
        yield* Effect.sleep("5 millis")
        yield* cluster.stop("node-2")
        expect(yield* Fiber.join(slow)).toBe("in flight")
        const where = yield* cluster.on(
          "node-1",
          Effect.flatMap(Counter.client, (client) => client(id).Where().pipe(Effect.timeout("10 seconds")))
        )
        expect(where).toBe("node-1")
        const events = lifecycle.filter(
          (event) => event.startsWith(`built ${id} `) || event.startsWith(`closed ${id} `)
        )
        expect(events.indexOf(`closed ${id} on node-2`)).toBeGreaterThan(-1)
        expect(events.indexOf(`closed ${id} on node-2`)).toBeLessThan(
          events.lastIndexOf(`built ${id} on node-1`)
        )

        // node-2 back: its shards move from node-1, which stops the entity before releasing them
        yield* cluster.restart("node-2")
        yield* cluster.awaitConverged()
        const back = yield* cluster.on(
          "node-1",
          Effect.flatMap(Counter.client, (client) =>
            client(id)
              .Where()
              .pipe(
                Effect.delay("20 millis"),
                Effect.repeat({ until: (node) => node === "node-2" }),
                Effect.timeout("10 seconds")
              )
          )
        )
        expect(back).toBe("node-2")
        const moved = lifecycle.filter(
          (event) => event.startsWith(`built ${id} `) || event.startsWith(`closed ${id} `)
        )
        expect(moved.lastIndexOf(`closed ${id} on node-1`)).toBeGreaterThan(-1)
        expect(moved.lastIndexOf(`closed ${id} on node-1`)).toBeLessThan(
          moved.lastIndexOf(`built ${id} on node-2`)
        )
      })
  )

  it.scopedLive(
    "an Rpc.fork request runs beside a running one; with disableFatalDefects a defect reaches the caller",
    () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.make({ nodes: 2, layer: Layer.merge(CounterLive, GateLive) })
        yield* cluster.awaitConverged()
        const released = yield* cluster.on(
          "node-1",
          Effect.gen(function* () {
            const client = yield* Gate.client
            const waiting = yield* Effect.fork(client("g").Wait())
            yield* Effect.sleep("20 millis")
            // concurrency 1: without Rpc.fork, Release would queue behind Wait forever
            yield* client("g").Release().pipe(Effect.timeout("5 seconds"))
            return yield* Fiber.join(waiting).pipe(Effect.timeout("5 seconds"))
          })
        )
        expect(released).toBe("released")
        const died = yield* cluster.on(
          "node-1",
          Effect.flatMap(Gate.client, (client) => Effect.exit(client("g").Die()))
        )
        expect(Exit.isFailure(died) && String(died.cause)).toContain("gate broke")
      })
  )

  it.scopedLive("an interrupted queued request never runs", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 2, layer: CounterLive })
      yield* cluster.awaitConverged()
      const id = yield* idOn(cluster, "node-2")
      const started = yield* Deferred.make<void>()
      yield* cluster.on(
        "node-1",
        Effect.gen(function* () {
          const client = yield* Counter.client
          const first = yield* Effect.fork(client(id).Slow({ label: "first" }))
          yield* Deferred.succeed(started, undefined)
          const second = yield* Effect.fork(client(id).Slow({ label: "second" }))
          yield* Effect.sleep("5 millis")
          yield* Fiber.interrupt(second)
          yield* Fiber.join(first)
        })
      )
      yield* Effect.sleep("100 millis")
      expect((yield* cluster.on("node-2", Log)).order).toEqual(["first"])
    })
  )
})
