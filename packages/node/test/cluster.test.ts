import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { awaitAllUp, nextDown, placements, sharedSqlite, startNodes, view, waitUntil } from "./utils.js"

const entityIds = Array.from({ length: 24 }, (_, i) => `user-${i + 1}`)

describe("three nodes in one process over loopback sockets, on one shared SQLite database", () => {
  it.scopedLive("every node sees every other node up", () =>
    Effect.gen(function* () {
      const nodes = yield* startNodes(3, yield* sharedSqlite)
      const ids = nodes.map((node) => node.info.id)
      yield* awaitAllUp(nodes, ids)
      for (const node of nodes) {
        const seen = yield* view(node)
        expect([...seen.entries()].sort()).toEqual(ids.map((id) => [id, "up"]))
      }
    }).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
  )

  it.scopedLive(
    "a crashed node is declared down (connection-refused) within a second, and its entities answer from another node",
    () =>
      Effect.gen(function* () {
        const nodes = yield* startNodes(3, yield* sharedSqlite)
        yield* awaitAllUp(
          nodes,
          nodes.map((node) => node.info.id)
        )
        const before = yield* placements(nodes[0], entityIds)
        const victim = nodes.find((node) => before.some((p) => p.node === node.info.id) && node !== nodes[0])!
        const survivors = nodes.filter((node) => node !== victim)
        const orphaned = before.filter((p) => p.node === victim.info.id).map((p) => p.entityId)
        const watchers = yield* Effect.forEach(survivors, (survivor) => nextDown(survivor, victim.info.id))

        const crashedAt = Date.now()
        yield* victim.crash
        const downs = yield* Effect.forEach(watchers, (watcher) =>
          Fiber.join(watcher).pipe(Effect.timeout("5 seconds"), Effect.orDie)
        )
        for (const down of downs) {
          expect(down.reason).toBe("connection-refused")
          expect(down.at - crashedAt).toBeLessThan(1000)
        }

        const after = yield* waitUntil(
          "the crashed node's entities to answer from a survivor",
          Effect.map(placements(survivors[0], orphaned), (answers) =>
            answers.every((p) => p.node !== victim.info.id) ? answers : undefined
          ),
          { timeoutMs: 10_000 }
        )
        const failoverMs = Date.now() - crashedAt
        expect(after.map((p) => p.entityId)).toEqual(orphaned)
        expect(failoverMs).toBeLessThan(5000)
        console.log(
          `crash of ${victim.info.id}: declared down after ${downs.map((d) => d.at - crashedAt).join(" / ")} ms,` +
            ` its ${orphaned.length} entities answered again after ${failoverMs} ms`
        )
        for (const survivor of survivors) {
          expect((yield* view(survivor)).get(victim.info.id)).toBe("down (connection-refused)")
        }
      }).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
  )
})
