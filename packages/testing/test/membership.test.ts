import { describe, expect, it } from "@effect/vitest"
import * as Node from "@foundation/core/Node"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { TestCluster } from "@foundation/testing"
import { AppLayer, entityOn, memberOn, whoami, convergedCluster } from "./fixtures.js"

describe("membership", () => {
  it.scopedLive("every node sees all three members up once the cluster has converged", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 3, layer: AppLayer })
      expect(cluster.nodes).toEqual(["node-1", "node-2", "node-3"])
      yield* cluster.awaitConverged()
      for (const observer of cluster.nodes) {
        const members = yield* cluster.on(
          observer,
          Effect.flatMap(Node.Node, (node) => node.members)
        )
        expect(members.map((member) => [member.info.id, member.status]).sort()).toEqual([
          ["node-1", "up"],
          ["node-2", "up"],
          ["node-3", "up"]
        ])
      }
    })
  )

  it.scopedLive(
    "a crashed node is declared down for connection refused on every survivor, before any heartbeat timeout",
    () =>
      Effect.gen(function* () {
        const cluster = yield* convergedCluster
        yield* cluster.crash("node-1")
        expect(yield* cluster.state("node-1")).toBe("crashed")
        for (const survivor of ["node-2", "node-3"]) {
          const member = yield* cluster.eventually(
            Effect.filterOrFail(memberOn(cluster, survivor, "node-1"), (member) => member.status === "down"),
            { timeout: "2 seconds" }
          )
          expect(member.downReason).toBe("connection-refused")
        }
      })
  )

  it.scopedLive("a stopped node leaves: every survivor gets NodeDown with reason left and drops it", () =>
    Effect.gen(function* () {
      const cluster = yield* convergedCluster
      const survivors = ["node-1", "node-3"]
      const downs = yield* Effect.forEach(survivors, (survivor) =>
        cluster
          .on(
            survivor,
            Effect.flatMap(Node.Node, (node) => node.events)
          )
          .pipe(
            Effect.map((events) =>
              Stream.runHead(
                Stream.filter(events, (event) => event._tag === "NodeDown" && event.node.id === "node-2")
              )
            ),
            Effect.flatMap(Effect.fork)
          )
      )
      yield* cluster.stop("node-2")
      for (const [index, down] of downs.entries()) {
        const event = yield* cluster.run(down, { timeout: "2 seconds" })
        expect(Option.map(event, (event) => event._tag === "NodeDown" && event.reason)).toEqual(
          Option.some("left")
        )
        yield* cluster.eventually(
          cluster
            .on(
              survivors[index],
              Effect.flatMap(Node.Node, (node) => node.members)
            )
            .pipe(
              Effect.map((members) =>
                expect(members.map((member) => member.info.id).sort()).toEqual(survivors)
              )
            )
        )
      }
    })
  )

  it.scopedLive(
    "a restarted node comes back up everywhere as a new incarnation and serves its shards again",
    () =>
      Effect.gen(function* () {
        const cluster = yield* convergedCluster
        const before = yield* memberOn(cluster, "node-1", "node-3")
        const entityId = yield* entityOn(cluster, "node-1", "node-3")
        yield* cluster.crash("node-3")
        yield* cluster.eventually(
          Effect.filterOrFail(memberOn(cluster, "node-1", "node-3"), (member) => member.status === "down")
        )
        yield* cluster.restart("node-3")
        expect(yield* cluster.state("node-3")).toBe("running")
        yield* cluster.awaitConverged()
        for (const observer of ["node-1", "node-2"]) {
          const member = yield* memberOn(cluster, observer, "node-3")
          expect(member.status).toBe("up")
          expect(member.info.startedAt).toBeGreaterThanOrEqual(before.info.startedAt)
        }
        // the engine caches one client per runner address; calls reach the new incarnation through it
        for (const node of cluster.nodes) {
          expect((yield* whoami(cluster, node, entityId)).host).toBe("node-3")
        }
        yield* cluster.stop("node-3")
        yield* cluster.restart("node-3")
        yield* cluster.awaitConverged()
      })
  )

  it.scopedLive("node ids are checked: an unknown id or a node in the wrong state is a typed error", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 2 })
      const unknown = yield* Effect.flip(cluster.crash("node-9"))
      expect(unknown).toBeInstanceOf(TestCluster.UnknownNode)
      expect(unknown.message).toContain("[node-1, node-2]")
      yield* cluster.crash("node-2")
      const onCrashed = yield* Effect.flip(cluster.on("node-2", Effect.void))
      expect(onCrashed).toEqual(
        new TestCluster.InvalidNodeState({
          nodeId: "node-2",
          operation: "run an effect on",
          state: "crashed"
        })
      )
      const restartRunning = yield* Effect.flip(cluster.restart("node-1"))
      expect(restartRunning._tag).toBe("InvalidNodeState")
      const partition = yield* Effect.flip(cluster.partition(["node-1"], ["nope"]))
      expect(partition._tag).toBe("UnknownNode")
    })
  )
})
