import { describe, expect, it } from "@effect/vitest"
import * as Node from "@foundation/core/Node"
import * as Effect from "effect/Effect"
import { TestCluster } from "@foundation/testing"
import { AppLayer, entityOn, memberOn, whoami } from "./fixtures.js"

// faster than FailureDetector.defaults (250 ms / 1 s / 3 s), so the test waits less
const detector = {
  heartbeatInterval: "100 millis",
  suspectAfter: "400 millis",
  heartbeatTimeout: "1 second"
} as const

describe("crash and partition", () => {
  it.scopedLive(
    "after a crash, the majority evicts an isolated node on heartbeat timeout while the isolated node only suspects; heal reunites them",
    () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.make({ nodes: 4, layer: AppLayer, detector })
        yield* cluster.awaitConverged()

        // crash: node-4's entity is served by a survivor, and node-4 no longer counts for quorum
        const entityId = yield* entityOn(cluster, "node-1", "node-4")
        yield* cluster.crash("node-4")
        const served = yield* cluster.run(whoami(cluster, "node-1", entityId), { timeout: "5 seconds" })
        expect(served.host).not.toBe("node-4")
        yield* cluster.awaitConverged()

        // partition node-1 from the two other survivors
        yield* cluster.partition(["node-1"], ["node-2", "node-3"])
        for (const observer of ["node-2", "node-3"]) {
          const member = yield* cluster.eventually(
            Effect.filterOrFail(memberOn(cluster, observer, "node-1"), (member) => member.status === "down"),
            { timeout: "3 seconds" }
          )
          expect(member.downReason).toBe("heartbeat-timeout")
          expect(member.since - member.lastHeardAt).toBeGreaterThanOrEqual(1000)
        }

        // node-1 sees one of three voters: no majority, so it suspects and never evicts
        for (let sample = 0; sample < 6; sample++) {
          for (const peer of ["node-2", "node-3"]) {
            expect((yield* memberOn(cluster, "node-1", peer)).status).toBe("suspect")
          }
          expect(
            yield* cluster.on(
              "node-1",
              Effect.flatMap(Node.Node, (node) => node.hasQuorum)
            )
          ).toBe(false)
          yield* cluster.advance("200 millis")
        }

        // the majority holds every shard lease
        yield* cluster.eventually(
          Effect.map(cluster.shardOwners, (owners) => {
            expect(owners.size).toBe(300)
            expect(new Set(owners.values())).toEqual(new Set(["node-2", "node-3"]))
          })
        )

        yield* cluster.heal
        yield* cluster.awaitConverged()
        expect(new Set((yield* cluster.shardOwners).values())).toEqual(
          new Set(["node-1", "node-2", "node-3"])
        )
      })
  )
})
