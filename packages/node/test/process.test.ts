import { RunnerStorage } from "@effect/cluster/RunnerStorage"
import { describe, expect, it } from "@effect/vitest"
import * as EntityHost from "@foundation/core/EntityHost"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as FoundationNode from "../src/FoundationNode.js"
import * as Sample from "../src/Sample.js"
import * as SocketTransport from "../src/SocketTransport.js"
import { nextDown, placements, spawnCli, view, waitUntil } from "./utils.js"

const entityIds = Array.from({ length: 24 }, (_, i) => `user-${i + 1}`)

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "foundation-node-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

describe("a node process run by `foundation node` (NodeRuntime.runMain)", () => {
  it.scopedLive(
    "ignores HOST/PORT, and on SIGTERM leaves gracefully: runner unregistered, entities moved at once, exit code 0",
    () =>
      Effect.gen(function* () {
        const filename = Path.join(yield* tempDir, "cluster.db")
        const [port, runnerPort, childPort, childRunnerPort] = yield* SocketTransport.freePorts(4)
        const observer = yield* FoundationNode.start(
          { id: "observer", port, runnerPort, storage: { _tag: "sqlite", filename } },
          Sample.layer(() => Effect.void)
        )
        const child = yield* spawnCli(
          [
            "node",
            "--id",
            "child",
            "--port",
            `${childPort}`,
            "--runner-port",
            `${childRunnerPort}`,
            "--sqlite-file",
            filename
          ],
          { HOST: "10.255.255.1", PORT: "1" }
        )
        yield* waitUntil(
          "the child node to be up",
          Effect.map(view(observer), (seen) => (seen.get("child") === "up" ? true : undefined)),
          { timeoutMs: 30_000, intervalMs: 100 }
        )
        const onChild = yield* waitUntil(
          "entities placed on the child",
          Effect.map(placements(observer, entityIds), (placed) => {
            const mine = placed.filter((p) => p.node === "child")
            return mine.length > 0 ? mine : undefined
          }),
          { timeoutMs: 15_000, intervalMs: 250 }
        )
        expect(onChild[0].runner).toBe(`127.0.0.1:${childRunnerPort}`)
        // once the engine routed a call to the child, the observer's host calls the child's host directly
        const direct = () => observer.run(Effect.map(EntityHost.EntityHost, (host) => host.stats.direct))
        const directBefore = yield* direct()
        yield* placements(
          observer,
          onChild.map((p) => p.entityId)
        )
        expect((yield* direct()) - directBefore).toBe(onChild.length)

        const down = yield* nextDown(observer, "child")
        const stoppedAt = Date.now()
        child.process.kill("SIGTERM")
        const code = yield* child.exited.pipe(Effect.timeout("15 seconds"), Effect.orDie)
        const exitedMs = Date.now() - stoppedAt
        expect(code).toBe(0)

        const moved = yield* waitUntil(
          "the child's entities to answer from the observer",
          Effect.map(
            placements(
              observer,
              onChild.map((p) => p.entityId)
            ),
            (answers) => (answers.every((p) => p.node === "observer") ? answers : undefined)
          ),
          { timeoutMs: 10_000 }
        )
        const movedMs = Date.now() - stoppedAt
        expect(moved.length).toBe(onChild.length)
        expect(movedMs).toBeLessThan(5000)
        const runners = yield* observer.run(Effect.flatMap(RunnerStorage, (storage) => storage.getRunners))
        expect(runners.map(([runner]) => runner.address.port)).not.toContain(childRunnerPort)
        const event = yield* Fiber.join(down).pipe(Effect.timeout("5 seconds"), Effect.orDie)
        expect(event.reason).toBe("left")
        console.log(
          `SIGTERM: exited 0 after ${exitedMs} ms, ${moved.length} entities answered from the observer after ` +
            `${movedMs} ms, observer saw it down (${event.reason}) after ${event.at - stoppedAt} ms`
        )
      }).pipe(Logger.withMinimumLogLevel(LogLevel.Error)),
    60_000
  )
})
