import { describe, expect, it } from "@effect/vitest"
import * as Node from "@foundation/core/Node"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { TestCluster } from "@foundation/testing"
import { AppLayer, memberOn, whoami } from "./fixtures.js"

/** Three converged nodes whose detector pings every 100 ms and suspects after 400 ms of silence. */
const fastDetectorCluster = (heartbeatTimeout: Duration.DurationInput) =>
  Effect.tap(
    TestCluster.make({
      nodes: 3,
      layer: AppLayer,
      detector: { heartbeatInterval: "100 millis", suspectAfter: "400 millis", heartbeatTimeout }
    }),
    (cluster) => cluster.awaitConverged()
  )

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
        const cluster = yield* fastDetectorCluster("1 second")
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

  it.scoped(
    "after a partition heals, a member that answers within the heartbeat timeout is not evicted by the side regaining its majority",
    () =>
      Effect.gen(function* () {
        const cluster = yield* fastDetectorCluster("2 seconds")
        yield* cluster.partition(["node-1"], ["node-2", "node-3"])
        // the majority evicts node-1; node-1, without a majority, only suspects its two peers
        yield* cluster.advance("3 seconds")
        expect((yield* memberOn(cluster, "node-2", "node-1")).status).toBe("down")
        for (const peer of ["node-2", "node-3"]) {
          expect((yield* memberOn(cluster, "node-1", peer)).status).toBe("suspect")
        }

        const evicted: Array<string> = []
        const events = yield* cluster.on(
          "node-1",
          Effect.flatMap(Node.Node, (node) => node.events)
        )
        yield* events.pipe(
          Stream.runForEach((event) =>
            Effect.sync(() => {
              if (event._tag === "NodeDown") evicted.push(event.node.id)
            })
          ),
          Effect.forkScoped
        )
        // node-2 answers at once, so node-1 regains its majority; node-3's answers take 600 ms: it
        // has been silent for 3 s, but only about 0.5 s of that before node-1 lost its majority
        yield* cluster.heal
        yield* cluster.delay("node-3", "node-1", "600 millis")
        yield* cluster.advance("3 seconds")

        expect(evicted).toEqual([])
        expect((yield* memberOn(cluster, "node-1", "node-3")).status).toBe("up")
        yield* cluster.delay("node-3", "node-1", 0)
        yield* cluster.awaitConverged()
      })
  )

  it.scoped(
    "a peer already silent before the majority was lost is evicted once the majority is back, without a fresh heartbeat timeout",
    () =>
      Effect.gen(function* () {
        const cluster = yield* fastDetectorCluster("2 seconds")
        // node-3 falls silent for node-1; a second later node-2 does too, so node-1 loses its majority
        // with node-3 silent for about 1.4 s of its 2 s
        yield* cluster.partition(["node-1"], ["node-3"])
        yield* cluster.advance("1 second")
        yield* cluster.partition(["node-1"], ["node-2"])
        yield* cluster.advance("3 seconds")
        expect((yield* memberOn(cluster, "node-1", "node-3")).status).toBe("suspect")
        // node-2 answers again: node-1 has its majority back, and node-3 is still silent
        yield* cluster.heal
        yield* cluster.partition(["node-1"], ["node-3"])
        const healedAt = yield* Clock.currentTimeMillis
        const member = yield* cluster.eventually(
          Effect.filterOrFail(memberOn(cluster, "node-1", "node-3"), (member) => member.status === "down")
        )
        expect(member.downReason).toBe("heartbeat-timeout")
        // the 0.6 s left of its timeout (plus a heartbeat or two), not a fresh 2 s
        expect(member.since - healedAt).toBeLessThan(1200)
        yield* cluster.heal
        yield* cluster.awaitConverged()
      })
  )
})
