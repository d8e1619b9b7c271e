import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as SupervisorDemo from "../src/demo/Supervisor.js"
import * as FoundationNode from "../src/FoundationNode.js"
import * as SocketTransport from "../src/SocketTransport.js"
import { awaitAllUp, sharedSqlite } from "./utils.js"

describe("the demo's Supervisor step", () => {
  it.scopedLive(
    "on three nodes over loopback TCP and one SQLite database, the singleton runs again after its node crashes and every survivor finds it",
    () =>
      Effect.gen(function* () {
        const sql = yield* sharedSqlite
        const ports = yield* SocketTransport.freePorts(6)
        const nodes = yield* Effect.forEach([0, 1, 2], (i) =>
          FoundationNode.start(
            { id: `node-${i + 1}`, port: ports[i * 2], runnerPort: ports[i * 2 + 1], storage: sql },
            SupervisorDemo.layer(sql)
          )
        )
        yield* awaitAllUp(nodes, ["node-1", "node-2", "node-3"])
        const report = yield* SupervisorDemo.run(nodes)
        expect(report.second.node).not.toBe(report.crashed)
        expect(report.second.epoch).toBeGreaterThan(report.first.epoch)
        expect(report.failoverMs).toBeLessThan(5000)
      }).pipe(Logger.withMinimumLogLevel(LogLevel.Error)),
    60_000
  )
})
