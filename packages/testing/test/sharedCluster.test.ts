import { expect, layer } from "@effect/vitest"
import * as Node from "@foundation/core/Node"
import * as Effect from "effect/Effect"
import { TestCluster } from "@foundation/testing"
import { AppLayer, whoami } from "./fixtures.js"

// One live cluster shared by the tests below; none of them leaves a fault behind.
layer(TestCluster.layer({ nodes: 3, layer: AppLayer }), { excludeTestServices: true })(
  "a shared cluster",
  (it) => {
    it.effect("every entity is reachable from every node, and each one is served by a single runner", () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.TestCluster
        const hosts = new Set<string>()
        for (let index = 0; index < 20; index++) {
          const served = yield* Effect.forEach(cluster.nodes, (node) => whoami(cluster, node, `e-${index}`))
          expect(new Set(served.map((address) => address.host)).size).toBe(1)
          hosts.add(served[0].host)
        }
        expect(Array.from(hosts).sort()).toEqual(["node-1", "node-2", "node-3"])
      })
    )

    it.effect("a delayed link slows node-to-node calls in that direction only, until healed", () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.TestCluster
        const pingMillis = (from: string, to: string) =>
          cluster.on(
            from,
            Effect.gen(function* () {
              const client = yield* Effect.flatMap(Node.Node, (node) => node.client(Node.nodeId(to)))
              const startedAt = Date.now()
              yield* client.Ping({ from: Node.nodeId(from), sentAt: startedAt })
              return Date.now() - startedAt
            })
          )
        yield* cluster.delay("node-1", "node-2", "200 millis")
        expect(yield* pingMillis("node-1", "node-2")).toBeGreaterThanOrEqual(200)
        expect(yield* pingMillis("node-2", "node-1")).toBeGreaterThanOrEqual(200)
        expect(yield* pingMillis("node-1", "node-3")).toBeLessThan(200)
        yield* cluster.heal
        expect(yield* pingMillis("node-1", "node-2")).toBeLessThan(200)
        yield* cluster.awaitConverged()
      })
    )

    it.effect("an unknown node id is a typed error that lists the valid ids", () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.TestCluster
        const error = yield* Effect.flip(cluster.on("node-4", Effect.void))
        expect(error).toEqual(
          new TestCluster.UnknownNode({ nodeId: "node-4", nodes: ["node-1", "node-2", "node-3"] })
        )
      })
    )
  }
)
