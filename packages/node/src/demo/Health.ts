/**
 * The demo's health step: every node runs `Health` with its HTTP endpoints on a free loopback port,
 * and the demo prints what they answer, fetched over real HTTP.
 *
 * How `Demo` uses it:
 * 1. add `layer` to each node's application layer:
 *    `FoundationNode.start(options, Layer.merge(Sample.layer(report), HealthDemo.layer))`;
 * 2. once the nodes are up, `printEndpoints(nodes)` and `printSummary(nodes, "Cluster health")`;
 * 3. after the crash, `printSummary(survivors, "Cluster health after the crash")`: the survivors'
 *    reports are degraded, with the crashed node unreachable and a recommendation.
 * The endpoints stay up while the demo runs (they close with each node's scope), so `curl` works
 * against the printed URLs meanwhile.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import type * as Foundation from "@foundation/core/Foundation"
import * as Health from "@foundation/core/Health"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as FoundationNode from "../FoundationNode.js"
import * as HealthHttp from "../HealthHttp.js"
import * as Table from "../internal/table.js"
import * as NodeVitals from "../NodeVitals.js"

/** A node's health: `Health` with the Node.js vitals, served over HTTP on `127.0.0.1:<free port>`. */
export const layer: Layer.Layer<Health.Health | HttpServer.HttpServer, ServeError, Foundation.NodeServices> =
  HealthHttp.layer({ port: 0 }).pipe(
    Layer.provideMerge(Health.layer({ pingTimeout: "1 second" })),
    Layer.provide(NodeVitals.layer())
  )

/** The demo's nodes, each running `layer`. */
export type Nodes = ReadonlyArray<FoundationNode.RunningNode<HttpServer.HttpServer>>

/** The health endpoints could not be read over HTTP. */
export class HealthDemoError extends Schema.TaggedError<HealthDemoError>()("HealthDemoError", {
  url: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `GET ${this.url} failed: ${this.reason}`
  }
}

const get = (url: string) =>
  Effect.tryPromise({
    try: async () => {
      const response = await fetch(url, { signal: AbortSignal.timeout(10_000) })
      return { status: response.status, body: await response.text() }
    },
    catch: (error) => new HealthDemoError({ url, reason: String(error) })
  })

const decodeReport = Schema.decodeUnknown(Schema.parseJson(Health.HealthReport))

/** Prints each node's four URLs. */
export const printEndpoints = (nodes: Nodes): Effect.Effect<void> =>
  Effect.gen(function* () {
    const rows = yield* Effect.forEach(nodes, (node) =>
      Effect.map(node.run(HealthHttp.url("")), (base) => [
        node.info.id,
        `${base}/health`,
        `${base}/health/live  ${base}/health/ready  ${base}/metrics`
      ])
    )
    yield* Console.log(
      `\nHealth endpoints (served while the demo runs)\n${Table.render(["node", "report", "probes and metrics"], rows)}`
    )
  })

/**
 * Fetches `GET /health` from every node (a check run by that node now) and prints one row per node,
 * then the issues and recommendations of the first node's report, and how many metric families
 * `/metrics` exports. Returns the reports.
 */
export const printSummary = (
  nodes: Nodes,
  title: string
): Effect.Effect<ReadonlyArray<Health.HealthReport>, HealthDemoError> =>
  Effect.gen(function* () {
    const reports = yield* Effect.forEach(
      nodes,
      (node) =>
        Effect.gen(function* () {
          const url = yield* node.run(HealthHttp.url("/health"))
          const answer = yield* get(url)
          return yield* Effect.mapError(
            decodeReport(answer.body),
            (error) => new HealthDemoError({ url, reason: `HTTP ${answer.status}: ${error.message}` })
          )
        }),
      { concurrency: "unbounded" }
    )
    const rows = reports.map((report) => {
      const unreachable = report.cluster.nodes.filter((n) => n.status === "unreachable").map((n) => n.node)
      const self = report.cluster.nodes.find((n) => n.self)
      return [
        report.node,
        report.overallStatus,
        `${report.cluster.healthyNodes}/${report.cluster.expectedNodes}`,
        unreachable.length > 0 ? unreachable.join(" ") : "-",
        report.infrastructure.storage.reachable
          ? `${report.infrastructure.storage.latencyMs} ms`
          : "unreachable",
        `${report.infrastructure.shardLocks.held}/${report.infrastructure.shardLocks.total}`,
        self?.memory ? `${Math.round(self.memory.heapUsedBytes / 1024 / 1024)} MB` : "-",
        self?.eventLoopLag ? `${self.eventLoopLag.p99Ms} ms` : "-",
        `${report.checkDurationMs} ms`
      ]
    })
    yield* Console.log(
      `\n${title} (GET /health on each node)\n` +
        Table.render(
          [
            "viewer",
            "status",
            "healthy",
            "unreachable",
            "storage",
            "shards held",
            "heap",
            "loop lag p99",
            "check"
          ],
          rows
        )
    )
    const first = reports[0]
    if (first !== undefined && first.issues.length > 0) {
      yield* Console.log(
        `\n  ${first.node} found:\n${first.issues.map((i) => `    - [${i.section}] ${i.message}`).join("\n")}`
      )
    }
    if (first !== undefined && first.recommendations.length > 0) {
      yield* Console.log(`  and recommends:\n${first.recommendations.map((r) => `    - ${r}`).join("\n")}`)
    }
    if (nodes[0] !== undefined) {
      const metricsUrl = yield* nodes[0].run(HealthHttp.url("/metrics"))
      const metrics = yield* get(metricsUrl)
      const families = metrics.body.split("\n").filter((line) => line.startsWith("# TYPE ")).length
      yield* Console.log(`\n  ${metricsUrl}: ${families} metric families in Prometheus text format`)
    }
    return reports
  })
