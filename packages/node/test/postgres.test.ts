import { RunnerStorage } from "@effect/cluster/RunnerStorage"
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as FoundationNode from "../src/FoundationNode.js"
import * as Sample from "../src/Sample.js"
import * as SocketTransport from "../src/SocketTransport.js"
import {
  type Child,
  freshPrefix,
  nextDown,
  placements,
  postgresUrl,
  sharedPostgres,
  spawnCli,
  view,
  waitUntil
} from "./utils.js"

const url = postgresUrl("multi-process PostgreSQL tests")

const entityIds = Array.from({ length: 24 }, (_, i) => `user-${i + 1}`)
const workerIds = ["w-1", "w-2", "w-3"]

describe.skipIf(!url)("three node processes on PostgreSQL", () => {
  it.scopedLive(
    "a SIGKILLed process is declared down by the others and its entities answer again; a SIGTERMed one leaves",
    () =>
      Effect.gen(function* () {
        const sql = yield* sharedPostgres(url!)
        const prefix = yield* freshPrefix(sql, "ft")
        const ports = yield* SocketTransport.freePorts(8)
        const workers = new Map<string, Child>()
        for (const [i, id] of workerIds.entries()) {
          const child = yield* spawnCli(
            [
              "node",
              "--id",
              id,
              "--port",
              `${ports[i * 2]}`,
              "--runner-port",
              `${ports[i * 2 + 1]}`,
              "--database-url",
              url!,
              "--table-prefix",
              prefix
            ],
            {}
          )
          workers.set(id, child)
        }
        const observer = yield* FoundationNode.start(
          { id: "observer", port: ports[6], runnerPort: ports[7], storage: sql, tablePrefix: prefix },
          Sample.layer(() => Effect.void)
        )
        yield* waitUntil(
          "all worker processes to be up",
          Effect.map(view(observer), (seen) =>
            workerIds.every((id) => seen.get(id) === "up") ? true : undefined
          ),
          { timeoutMs: 40_000, intervalMs: 100 }
        )
        let previous = ""
        const placed = yield* waitUntil(
          "placement to settle",
          Effect.map(placements(observer, entityIds), (answers) => {
            const key = answers.map((p) => p.node).join(",")
            const settled = key === previous && workerIds.some((id) => key.includes(id))
            previous = key
            return settled ? answers : undefined
          }),
          { timeoutMs: 30_000, intervalMs: 500 }
        )

        const victim = workerIds
          .map((id) => ({ id, count: placed.filter((p) => p.node === id).length }))
          .sort((a, b) => b.count - a.count)[0].id
        const orphaned = placed.filter((p) => p.node === victim).map((p) => p.entityId)
        const survivors = workerIds.filter((id) => id !== victim)
        const down = yield* nextDown(observer, victim)
        const killedAt = Date.now()
        workers.get(victim)!.process.kill("SIGKILL")

        const event = yield* Fiber.join(down).pipe(Effect.timeout("5 seconds"), Effect.orDie)
        expect(event.reason).toBe("connection-refused")
        const answered = yield* waitUntil(
          "the killed process's entities to answer from another node",
          Effect.map(placements(observer, orphaned), (answers) =>
            answers.every((p) => p.node !== victim) ? answers : undefined
          ),
          { timeoutMs: 15_000 }
        )
        const failoverMs = Date.now() - killedAt
        expect(answered.length).toBe(orphaned.length)
        expect(failoverMs).toBeLessThan(10_000)
        yield* waitUntil(
          "the surviving processes to log the killed one down",
          Effect.sync(() =>
            survivors.every((id) =>
              workers.get(id)!.output().includes(`node ${victim} down (connection-refused)`)
            )
              ? true
              : undefined
          ),
          { timeoutMs: 5000 }
        )
        console.log(
          `SIGKILL of ${victim}: observer declared it down after ${event.at - killedAt} ms, ` +
            `its ${orphaned.length} entities answered again after ${failoverMs} ms`
        )

        const leaving = survivors[0]
        const left = yield* nextDown(observer, leaving)
        const leavingRunner = ports[workerIds.indexOf(leaving) * 2 + 1]
        const stoppedAt = Date.now()
        workers.get(leaving)!.process.kill("SIGTERM")
        expect(yield* workers.get(leaving)!.exited.pipe(Effect.timeout("15 seconds"), Effect.orDie)).toBe(0)
        const leftEvent = yield* Fiber.join(left).pipe(Effect.timeout("5 seconds"), Effect.orDie)
        expect(leftEvent.reason).toBe("left")
        const runners = yield* observer.run(Effect.flatMap(RunnerStorage, (storage) => storage.getRunners))
        expect(runners.map(([runner]) => runner.address.port)).not.toContain(leavingRunner)
        console.log(
          `SIGTERM of ${leaving}: exited 0, seen down (${leftEvent.reason}) after ${leftEvent.at - stoppedAt} ms`
        )
      }).pipe(Logger.withMinimumLogLevel(LogLevel.Error)),
    90_000
  )

  it.scopedLive(
    "a node whose database vanished still stops on SIGTERM, within its shutdown timeout",
    () =>
      Effect.gen(function* () {
        const admin = yield* sharedPostgres(url!)
        const database = `fnode_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6).toString(36)}`
        const query = (statement: string) =>
          Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)).pipe(
            Effect.provide(admin),
            Effect.orDie
          )
        yield* Effect.acquireRelease(query(`CREATE DATABASE ${database}`), () =>
          query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
        )
        const databaseUrl = new URL(url!)
        databaseUrl.pathname = `/${database}`
        const [port, runnerPort] = yield* SocketTransport.freePorts(2)
        const child = yield* spawnCli(
          [
            "node",
            "--id",
            "orphan",
            "--port",
            `${port}`,
            "--runner-port",
            `${runnerPort}`,
            "--database-url",
            databaseUrl.toString(),
            "--shutdown-timeout",
            "2"
          ],
          {}
        )
        yield* waitUntil(
          "the node to run its singleton",
          Effect.sync(() => (child.output().includes("singleton started on orphan") ? true : undefined)),
          { timeoutMs: 30_000, intervalMs: 100 }
        )
        yield* query(`DROP DATABASE ${database} WITH (FORCE)`)
        yield* Effect.sleep("1500 millis")
        const stoppedAt = Date.now()
        child.process.kill("SIGTERM")
        const code = yield* child.exited.pipe(Effect.timeout("10 seconds"), Effect.orDie)
        expect([0, 1]).toContain(code)
        console.log(`SIGTERM without a database: exited ${code} after ${Date.now() - stoppedAt} ms`)
      }).pipe(Logger.withMinimumLogLevel(LogLevel.Error)),
    60_000
  )
})
