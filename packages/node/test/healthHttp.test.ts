import * as HttpServer from "@effect/platform/HttpServer"
import { describe, expect, it } from "@effect/vitest"
import * as Health from "@foundation/core/Health"
import * as NodeFault from "@foundation/core/NodeFault"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Schema from "effect/Schema"
import * as FoundationNode from "../src/FoundationNode.js"
import * as HealthHttp from "../src/HealthHttp.js"
import * as NodeVitals from "../src/NodeVitals.js"
import * as SocketTransport from "../src/SocketTransport.js"
import { awaitAllUp, sharedSqlite, waitUntil } from "./utils.js"

interface Answer {
  readonly status: number
  readonly contentType: string
  readonly body: string
}

const get = (url: string): Effect.Effect<Answer> =>
  Effect.promise(async () => {
    const response = await fetch(url, { signal: AbortSignal.timeout(10_000) })
    return {
      status: response.status,
      contentType: response.headers.get("content-type") ?? "",
      body: await response.text()
    }
  })

const decodeReport = Schema.decodeUnknownSync(Schema.parseJson(Health.HealthReport))

/**
 * Two nodes over loopback sockets on one shared SQLite database, each with Health (real `NodeVitals`)
 * and its HTTP endpoints on a free port. `database` cuts Health's view of storage on both nodes.
 */
const startCluster = Effect.gen(function* () {
  const sql = yield* sharedSqlite
  const ports = yield* SocketTransport.freePorts(4)
  const database = NodeFault.makeSeverance()
  const app = HealthHttp.layer({ port: 0 }).pipe(
    Layer.provideMerge(
      Health.layer({ pingTimeout: "1 second", storageTimeout: "1 second" }).pipe(
        Layer.provide([NodeVitals.layer(), NodeFault.severableRunnerStorage(database)])
      )
    )
  )
  const nodes = yield* Effect.forEach([0, 1], (i) =>
    FoundationNode.start(
      { id: `node-${i + 1}`, port: ports[i * 2], runnerPort: ports[i * 2 + 1], storage: sql },
      app
    )
  )
  yield* awaitAllUp(
    nodes,
    nodes.map((node) => node.info.id)
  )
  const url = (node: (typeof nodes)[number], path: string) => node.run(HealthHttp.url(path))
  return { nodes, database, url }
})

describe("Health over HTTP on 127.0.0.1, on real nodes over sockets", () => {
  it.scopedLive(
    "GET /health is the JSON report, /health/live and /health/ready answer 200, /metrics is Prometheus text with Foundation's and the engine's metrics",
    () =>
      Effect.gen(function* () {
        const { nodes, url } = yield* startCluster
        const address = yield* nodes[0].run(HttpServer.HttpServer)
        expect(address.address).toMatchObject({ _tag: "TcpAddress", hostname: "127.0.0.1" })

        const health = yield* waitUntil(
          "a healthy report over HTTP",
          Effect.map(get(yield* url(nodes[0], "/health")), (answer) =>
            answer.status === 200 && decodeReport(answer.body).overallStatus === "healthy"
              ? answer
              : undefined
          ),
          { timeoutMs: 15_000, intervalMs: 200 }
        )
        expect(health.contentType).toContain("application/json")
        const report = decodeReport(health.body)
        expect(report.node).toBe("node-1")
        expect(report.cluster).toMatchObject({ healthyNodes: 2, expectedNodes: 2 })
        for (const n of report.cluster.nodes) {
          // measured by NodeVitals on each node, fetched over the node RPC for node-2
          expect(n.memory?.rssBytes).toBeGreaterThan(0)
          expect(n.memory?.heapLimitBytes).toBeGreaterThan(n.memory?.heapUsedBytes ?? Infinity)
          expect(n.eventLoopLag?.maxMs).toBeGreaterThanOrEqual(0)
        }
        expect(report.infrastructure.storage.reachable).toBe(true)
        expect(report.infrastructure.shardLocks.held).toBe(report.infrastructure.shardLocks.total)

        const live = yield* get(yield* url(nodes[0], "/health/live"))
        expect(live.status).toBe(200)
        expect(JSON.parse(live.body)).toMatchObject({ alive: true })
        const ready = yield* get(yield* url(nodes[1], "/health/ready"))
        expect(ready.status).toBe(200)
        const readiness = JSON.parse(ready.body)
        expect(readiness.ready).toBe(true)
        expect(readiness.checks.map((c: { name: string; ok: boolean }) => [c.name, c.ok])).toEqual([
          ["running", true],
          ["storage", true],
          ["runner", true],
          ["quorum", true]
        ])

        const metrics = yield* get(yield* url(nodes[0], "/metrics"))
        expect(metrics.status).toBe(200)
        expect(metrics.contentType).toBe("text/plain; version=0.0.4; charset=utf-8")
        const lines = metrics.body.trimEnd().split("\n")
        for (const line of lines) {
          expect(line).toMatch(
            /^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+|[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? [^ ]+)$/
          )
        }
        expect(lines).toContain("# TYPE foundation_rpc_calls_total counter")
        expect(lines).toContain("# TYPE foundation_rpc_latency_ms histogram")
        expect(lines).toContain('foundation_cluster_members{node="node-1",status="up"} 2')
        expect(lines).toContain("# TYPE effect_cluster_shards gauge")
        expect(lines.some((l) => /^foundation_rpc_latency_ms_bucket\{.*le="\+Inf"\} \d+$/.test(l))).toBe(true)
        expect(
          lines.some((l) => /^foundation_node_heartbeat_rtt_ms\{node="node-1",peer="node-2"\} /.test(l))
        ).toBe(true)

        expect((yield* get(yield* url(nodes[0], "/nowhere"))).status).toBe(404)
      }).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
  )

  it.scopedLive(
    "a crashed peer: /health answers 200 degraded with a recommendation; storage down: /health and /health/ready answer 503, /health/live 200",
    () =>
      Effect.gen(function* () {
        const { database, nodes, url } = yield* startCluster
        const health = yield* url(nodes[0], "/health")
        yield* waitUntil(
          "a healthy report over HTTP",
          Effect.map(get(health), (answer) => (answer.status === 200 ? true : undefined)),
          { timeoutMs: 15_000, intervalMs: 200 }
        )

        yield* nodes[1].crash
        const degraded = yield* waitUntil(
          "node-2 declared down",
          Effect.map(get(health), (answer) =>
            decodeReport(answer.body).cluster.nodes.find((n) => n.node === "node-2")?.membership === "down"
              ? answer
              : undefined
          ),
          { timeoutMs: 10_000, intervalMs: 100 }
        )
        expect(degraded.status).toBe(200)
        const report = decodeReport(degraded.body)
        expect(report.overallStatus).toBe("degraded")
        expect(report.cluster.nodes.find((n) => n.node === "node-2")?.status).toBe("unreachable")
        expect(report.recommendations.some((r) => r.startsWith("Restart node-2"))).toBe(true)

        database.severed = true
        const critical = yield* get(health)
        expect(critical.status).toBe(503)
        expect(decodeReport(critical.body).infrastructure.storage.reachable).toBe(false)
        const ready = yield* get(yield* url(nodes[0], "/health/ready"))
        expect(ready.status).toBe(503)
        expect(JSON.parse(ready.body).checks).toContainEqual(
          expect.objectContaining({ name: "storage", ok: false })
        )
        expect((yield* get(yield* url(nodes[0], "/health/live"))).status).toBe(200)
      }).pipe(Logger.withMinimumLogLevel(LogLevel.None))
  )
})

describe("HealthHttp.env", () => {
  it.effect(
    "FOUNDATION_HEALTH_PORT and FOUNDATION_HEALTH_HOST choose where it listens; a bad value names its variable",
    () =>
      Effect.gen(function* () {
        const read = (env: Record<string, string>) =>
          Effect.withConfigProvider(
            Config.all(HealthHttp.env),
            ConfigProvider.fromMap(new Map(Object.entries(env)))
          )
        expect(yield* read({})).toEqual({ port: HealthHttp.defaultPort, host: "127.0.0.1" })
        expect(yield* read({ FOUNDATION_HEALTH_PORT: "9100", FOUNDATION_HEALTH_HOST: "0.0.0.0" })).toEqual({
          port: 9100,
          host: "0.0.0.0"
        })
        expect(String(yield* Effect.flip(read({ FOUNDATION_HEALTH_PORT: "http" })))).toContain(
          "FOUNDATION_HEALTH_PORT"
        )
        expect(String(yield* Effect.flip(read({ FOUNDATION_HEALTH_HOST: " " })))).toContain(
          "FOUNDATION_HEALTH_HOST"
        )
      })
  )
})
