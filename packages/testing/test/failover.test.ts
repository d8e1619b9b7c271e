import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { TestCluster } from "@foundation/testing"
import { entityOn, Ledger, Observations, whoami, convergedCluster } from "./fixtures.js"

const countByNode = (owners: ReadonlyMap<string, string>) => {
  const counts: Record<string, number> = {}
  for (const node of owners.values()) counts[node] = (counts[node] ?? 0) + 1
  return counts
}

/** The running nodes whose `leader` singleton is running. */
const leaders = (cluster: TestCluster.Cluster<Observations>) =>
  Effect.flatMap(cluster.running, (nodes) =>
    Effect.filter(nodes, (node) =>
      cluster.on(
        node,
        Effect.map(Observations, (observed) => observed.leaderRunning)
      )
    )
  )

describe("failover", () => {
  it.scopedLive(
    "a singleton runs on exactly one node; when that node crashes, its shard leases and the singleton move to the survivors",
    () =>
      Effect.gen(function* () {
        const cluster = yield* convergedCluster
        const [leader, ...others] = yield* cluster.eventually(
          Effect.filterOrFail(leaders(cluster), (nodes) => nodes.length === 1)
        )
        expect(others).toEqual([])
        const before = countByNode(yield* cluster.shardOwners)
        expect(Object.keys(before).sort()).toEqual(["node-1", "node-2", "node-3"])
        expect(Object.values(before).reduce((sum, count) => sum + count, 0)).toBe(300)

        yield* cluster.crash(leader)
        const [successor] = yield* cluster.eventually(
          Effect.filterOrFail(leaders(cluster), (nodes) => nodes.length === 1),
          { timeout: "5 seconds" }
        )
        expect(successor).not.toBe(leader)
        expect(
          yield* cluster.on(
            successor,
            Effect.map(Observations, (observed) => observed.leaderStarts)
          )
        ).toBe(1)

        yield* cluster.awaitConverged()
        expect(yield* leaders(cluster)).toEqual([successor])
        const after = countByNode(yield* cluster.shardOwners)
        const survivors = cluster.nodes.filter((node) => node !== leader)
        expect(Object.keys(after).sort()).toEqual(survivors)
        expect(Object.values(after).reduce((sum, count) => sum + count, 0)).toBe(300)
        for (const survivor of survivors) expect(after[survivor]).toBeGreaterThan(before[survivor])
      })
  )

  it.scopedLive(
    "after its host crashes, an entity answers every survivor again, served by another runner, within 5 s",
    () =>
      Effect.gen(function* () {
        const cluster = yield* convergedCluster
        const entityId = yield* entityOn(cluster, "node-1", "node-2")
        for (const node of cluster.nodes) {
          expect((yield* whoami(cluster, node, entityId)).host).toBe("node-2")
        }

        yield* cluster.crash("node-2")
        const crashedAt = Date.now()
        // volatile calls retry while the shard has no owner, so each call blocks through the failover
        const served = yield* Effect.forEach(
          ["node-1", "node-3"],
          (node) => cluster.run(whoami(cluster, node, entityId), { timeout: "5 seconds" }),
          { concurrency: "unbounded" }
        )
        const elapsed = Date.now() - crashedAt
        expect(served[0].host).not.toBe("node-2")
        expect(served[1].host).toBe(served[0].host)
        expect(elapsed).toBeLessThan(5000)
      })
  )

  it.scopedLive("a persisted message with a primary key runs once, whichever nodes send it", () =>
    Effect.gen(function* () {
      const cluster = yield* convergedCluster
      const record = (node: string) =>
        cluster.on(
          node,
          Effect.flatMap(Ledger.client, (client) => client("ledger-1").Record({ key: "order-42" }))
        )
      const first = yield* cluster.run(record("node-1"))
      const again = yield* cluster.run(
        Effect.all([record("node-2"), record("node-3")], { concurrency: "unbounded" })
      )
      expect(again.map((address) => address.host)).toEqual([first.host, first.host])
      const recorded = yield* Effect.forEach(cluster.nodes, (node) =>
        cluster.on(
          node,
          Effect.map(Observations, (observed) => observed.recorded)
        )
      )
      expect(recorded.reduce((sum, count) => sum + count, 0)).toBe(1)
    })
  )

  it.scopedLive(
    "a persisted request sent right after its entity's node crashed is answered by the new owner from storage",
    () =>
      Effect.gen(function* () {
        const cluster = yield* convergedCluster
        const record = (node: string, key: string) =>
          cluster.on(
            node,
            Effect.flatMap(Ledger.client, (client) => client("ledger-7").Record({ key }))
          )
        const owner = yield* cluster.run(record("node-1", "before-crash"))
        const survivor = owner.host === "node-3" ? "node-2" : "node-3"
        yield* cluster.crash(owner.host)
        const served = yield* cluster.run(record(survivor, "after-crash"), { timeout: "5 seconds" })
        expect(served.host).not.toBe(owner.host)
      })
  )
})
