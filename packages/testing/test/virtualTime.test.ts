import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { TestCluster } from "@foundation/testing"
import { AppLayer, memberOn, whoami } from "./fixtures.js"

describe("under a TestClock", () => {
  it.scoped("a crash fails over on virtual time: every survivor is served by another runner", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 3, layer: AppLayer })
      expect(cluster.virtualTime).toBe(true)
      yield* cluster.awaitConverged()
      const before = yield* whoami(cluster, "node-1", "e-1")

      yield* cluster.crash(before.host)
      const crashedAt = yield* Clock.currentTimeMillis
      for (const node of cluster.nodes.filter((node) => node !== before.host)) {
        const served = yield* cluster.run(whoami(cluster, node, "e-1"), { timeout: "5 seconds" })
        expect(served.host).not.toBe(before.host)
      }
      expect((yield* Clock.currentTimeMillis) - crashedAt).toBeLessThan(5000)
      yield* cluster.awaitConverged()
    })
  )

  it.scoped(
    "an isolated node is declared down exactly when the heartbeat timeout has passed on the clock",
    () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.make({
          nodes: 3,
          layer: AppLayer,
          detector: {
            heartbeatInterval: "100 millis",
            suspectAfter: "400 millis",
            heartbeatTimeout: "1 second"
          }
        })
        yield* cluster.awaitConverged()
        yield* cluster.partition(["node-3"], ["node-1", "node-2"])
        const partitionedAt = yield* Clock.currentTimeMillis
        // the last answer came at most one heartbeat (100 ms) before the partition
        yield* cluster.advance("850 millis")
        expect((yield* memberOn(cluster, "node-1", "node-3")).status).toBe("suspect")
        const member = yield* cluster.eventually(
          Effect.filterOrFail(memberOn(cluster, "node-1", "node-3"), (member) => member.status === "down")
        )
        expect(member.downReason).toBe("heartbeat-timeout")
        expect(member.since - member.lastHeardAt).toBeGreaterThan(1000)
        expect(member.since - partitionedAt).toBeLessThanOrEqual(1150)
        yield* cluster.heal
        yield* cluster.awaitConverged()
      })
  )
})
