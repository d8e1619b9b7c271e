import { describe, expect, it } from "@effect/vitest"
import * as Channels from "@foundation/core/Channels"
import * as ClusterConfig from "@foundation/core/ClusterConfig"
import * as Health from "@foundation/core/Health"
import { Node } from "@foundation/core/Node"
import * as NodeFault from "@foundation/core/NodeFault"
import * as Registry from "@foundation/core/Registry"
import * as RegistryStorage from "@foundation/core/RegistryStorage"
import * as Supervisor from "@foundation/core/Supervisor"
import * as SupervisorStorage from "@foundation/core/SupervisorStorage"
import * as Vitals from "@foundation/core/Vitals"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { TestCluster } from "@foundation/testing"

const detector = {
  heartbeatInterval: "100 millis",
  suspectAfter: "400 millis",
  heartbeatTimeout: "1 second"
} as const

/** Scheduled checks often, short timeouts: the tests below wait on them. */
const fast = {
  initialDelay: "100 millis",
  interval: "200 millis",
  pingTimeout: "500 millis",
  storageTimeout: "500 millis"
} as const

const mb = 1024 * 1024

const calm = new Vitals.Sample({
  memory: new Vitals.Memory({
    rssBytes: 120 * mb,
    heapUsedBytes: 60 * mb,
    heapTotalBytes: 90 * mb,
    heapLimitBytes: 2048 * mb,
    externalBytes: 2 * mb
  }),
  eventLoopLag: new Vitals.EventLoopLag({ meanMs: 1, p99Ms: 4, maxMs: 7 })
})

const lagging = new Vitals.Sample({
  memory: calm.memory,
  eventLoopLag: new Vitals.EventLoopLag({ meanMs: 120, p99Ms: 400, maxMs: 650 })
})

const healthLayer = (
  settings: Health.SettingsInput = {},
  sampleOf: (node: string) => Vitals.Sample = () => calm
) => Health.layer(settings).pipe(Layer.provide(Vitals.layerTest(sampleOf)))

type HealthCluster = TestCluster.Cluster<Health.Health>

const healthOn = (cluster: HealthCluster, node: string) => cluster.on(node, Health.getClusterHealth)

const nodeIn = (report: Health.HealthReport, id: string) => {
  const found = report.cluster.nodes.find((n) => n.node === id)
  if (!found) throw new Error(`${id} is not in the report`)
  return found
}

/** Waits until a check on `node` satisfies `expectations` (assertions inside), and returns it. */
const eventuallyOn = (
  cluster: HealthCluster,
  node: string,
  expectations: (report: Health.HealthReport) => void,
  timeout: Duration.DurationInput = "10 seconds"
) =>
  cluster.eventually(
    Effect.map(healthOn(cluster, node), (report) => {
      expectations(report)
      return report
    }),
    { timeout, interval: "100 millis" }
  )

const quiet = Logger.withMinimumLogLevel(LogLevel.None)

/** A logger that keeps every line (level and message) instead of printing it. */
const capturedLogs = () => {
  const lines: Array<{ level: string; message: string }> = []
  const capture = Logger.make(({ logLevel, message }) => {
    lines.push({ level: logLevel.label, message: [message].flat().map(String).join(" ") })
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, capture) }
}

describe("Health on a TestCluster", () => {
  it.scopedLive(
    "with every node up, the report is healthy: every node answers its ping with its vitals, storage answers, every shard is held",
    () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.make({ nodes: 3, detector, layer: healthLayer() })
        yield* cluster.awaitConverged()
        const before = Date.now()
        const report = yield* healthOn(cluster, "node-1")
        const after = Date.now()

        expect(report.overallStatus).toBe("healthy")
        expect(report.node).toBe("node-1")
        expect(report.cluster).toMatchObject({
          status: "healthy",
          expectedNodes: 3,
          knownNodes: 3,
          connectedNodes: 3,
          healthyNodes: 3,
          hasQuorum: true
        })
        expect(report.cluster.expectedSource).toContain("members known")
        expect(report.cluster.nodes.map((n) => n.node)).toEqual(["node-1", "node-2", "node-3"])
        for (const n of report.cluster.nodes) {
          expect(n).toMatchObject({ status: "healthy", membership: "up", error: null })
          expect(n.memory).toEqual(calm.memory)
          expect(n.eventLoopLag).toEqual(calm.eventLoopLag)
          expect(n.pingMs).not.toBeNull()
          expect(n.uptimeMs).toBeGreaterThan(0)
        }
        expect(nodeIn(report, "node-1")).toMatchObject({ self: true, pingMs: 0 })

        const { shardLocks, storage } = report.infrastructure
        expect(report.infrastructure.status).toBe("healthy")
        expect(storage).toMatchObject({ reachable: true, runners: 3, healthyRunners: 3, error: null })
        expect(storage.latencyMs).toBeGreaterThanOrEqual(0)
        expect(shardLocks.total).toBeGreaterThan(0)
        expect(shardLocks.held).toBe(shardLocks.total)
        expect(shardLocks.byNode.map((n) => n.node)).toEqual(["node-1", "node-2", "node-3"])
        for (const n of shardLocks.byNode) expect(n.held).toBeGreaterThan(0)
        expect(shardLocks.unknownNodes).toEqual([])

        expect(report.services.status).toBe("unavailable")
        expect(report.services.reason).toContain("no Supervisor")
        expect(report.infrastructure.channels.available).toBe(false)

        const pings = report.performance.byRpc.find((r) => r.rpc === "Node.Ping")
        expect(pings?.calls).toBeGreaterThanOrEqual(2)
        expect(pings?.errors).toBe(0)
        expect(report.performance.avgMessageLatencyMs).not.toBeNull()
        expect(report.performance.avgHeartbeatRttMs).not.toBeNull()

        expect(report.issues).toEqual([])
        expect(report.recommendations).toEqual([])
        expect(report.checkedAt).toBeGreaterThanOrEqual(before)
        expect(report.checkedAt).toBeLessThanOrEqual(after)
        expect(report.checkDurationMs).toBeGreaterThan(0)
        expect(report.checkDurationMs).toBeLessThanOrEqual(after - before + 1)
        // the report is data: it survives its JSON encoding
        const json = Schema.encodeSync(Schema.parseJson(Health.HealthReport))(report)
        expect(Schema.decodeSync(Schema.parseJson(Health.HealthReport))(json)).toEqual(report)
      }).pipe(quiet)
  )

  it.scopedLive(
    "a crashed node makes the cluster degraded with a recommendation to restart it; the crash is logged as an error and the status change is published",
    () =>
      Effect.gen(function* () {
        const logs = capturedLogs()
        const cluster = yield* TestCluster.make({
          nodes: 3,
          detector,
          layer: healthLayer({ ...fast, interval: "5 seconds" })
        }).pipe(Effect.provide(logs.layer))
        yield* cluster.awaitConverged()
        yield* cluster.eventually(
          cluster.on(
            "node-1",
            Effect.flatMap(Health.Health, (health) =>
              Effect.map(health.latest, (latest) =>
                expect(Option.map(latest, (r) => r.overallStatus)).toEqual(Option.some("healthy"))
              )
            )
          )
        )
        const changes = yield* cluster.on(
          "node-1",
          Effect.flatMap(Health.Health, (health) => health.changes)
        )
        const next = yield* Effect.fork(Stream.runHead(changes))

        yield* cluster.crash("node-3")
        // the next scheduled check is 5 s away: the NodeDown triggers one at once
        const change = Option.getOrThrow(yield* Fiber.join(next).pipe(Effect.timeout("4 seconds")))
        expect(change.from).toBe("healthy")
        expect(change.to).toBe("degraded")
        const report = change.report
        expect(report.cluster).toMatchObject({ status: "degraded", expectedNodes: 3, healthyNodes: 2 })
        expect(nodeIn(report, "node-3")).toMatchObject({
          status: "unreachable",
          membership: "down",
          downReason: "connection-refused",
          pingMs: null,
          memory: null
        })
        expect(report.issues.some((i) => i.section === "cluster" && i.message.includes("node-3"))).toBe(true)
        expect(report.recommendations.some((r) => r.startsWith("Restart node-3"))).toBe(true)

        // and a check on demand from a survivor says the same
        const onDemand = yield* healthOn(cluster, "node-2")
        expect(onDemand.overallStatus).toBe("degraded")
        expect(nodeIn(onDemand, "node-3").status).toBe("unreachable")

        expect(logs.lines).toContainEqual({
          level: "ERROR",
          message: "node node-3 is down (connection-refused); checking cluster health"
        })
        expect(
          logs.lines.some((l) => l.level === "WARN" && l.message.startsWith("Cluster health: DEGRADED"))
        ).toBe(true)
      })
  )

  it.scopedLive(
    "a partition: the minority node is critical and told it is cut off; the majority is degraded; healed, both are healthy",
    () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.make({ nodes: 3, detector, layer: healthLayer(fast) })
        yield* cluster.awaitConverged()
        yield* cluster.partition(["node-1"], ["node-2", "node-3"])

        const minority = yield* eventuallyOn(cluster, "node-1", (report) => {
          expect(report.overallStatus).toBe("critical")
          expect(report.cluster.hasQuorum).toBe(false)
        })
        expect(minority.cluster.healthyNodes).toBe(1)
        expect(nodeIn(minority, "node-2")).toMatchObject({ status: "unreachable" })
        expect(nodeIn(minority, "node-2").error).toContain("no answer within")
        expect(minority.recommendations.some((r) => r.includes("minority side of a network partition"))).toBe(
          true
        )

        const majority = yield* eventuallyOn(cluster, "node-2", (report) => {
          expect(report.overallStatus).toBe("degraded")
          expect(nodeIn(report, "node-1").status).toBe("unreachable")
        })
        expect(majority.cluster).toMatchObject({ healthyNodes: 2, hasQuorum: true })
        expect(majority.recommendations.some((r) => r.startsWith("Check node-1"))).toBe(true)

        yield* cluster.heal
        yield* eventuallyOn(
          cluster,
          "node-1",
          (report) => expect(report.overallStatus).toBe("healthy"),
          "20 seconds"
        )
        yield* eventuallyOn(cluster, "node-2", (report) => expect(report.overallStatus).toBe("healthy"))
      }).pipe(quiet)
  )

  it.scopedLive(
    "storage down: infrastructure is critical with a recommendation to check the database, readiness fails, liveness holds, an error is logged and the change published; back up, healthy",
    () =>
      Effect.gen(function* () {
        const logs = capturedLogs()
        // One switch for every node's Health: the database is down for all of them. Only Health's view
        // of storage is cut (TestCluster keeps the engine's storage up), which is what it reports on.
        const database = NodeFault.makeSeverance()
        const cluster = yield* TestCluster.make({
          nodes: 3,
          detector,
          layer: Health.layer(fast).pipe(
            Layer.provide([Vitals.layerTest(() => calm), NodeFault.severableRunnerStorage(database)])
          )
        }).pipe(Effect.provide(logs.layer))
        yield* cluster.awaitConverged()
        expect((yield* healthOn(cluster, "node-2")).overallStatus).toBe("healthy")
        const health = yield* cluster.on("node-2", Health.Health)
        yield* cluster.eventually(
          Effect.map(health.latest, (latest) =>
            expect(Option.map(latest, (r) => r.overallStatus)).toEqual(Option.some("healthy"))
          )
        )
        const changes = yield* health.changes
        const twoChanges = yield* Effect.fork(Stream.runCollect(Stream.take(changes, 2)))
        const probes = cluster.on(
          "node-2",
          Effect.flatMap(Health.Health, (health) => Effect.all([health.readiness, health.liveness]))
        )
        expect((yield* probes)[0].ready).toBe(true)

        database.severed = true
        const report = yield* healthOn(cluster, "node-2")
        expect(report.overallStatus).toBe("critical")
        expect(report.infrastructure.status).toBe("critical")
        expect(report.infrastructure.storage).toMatchObject({ reachable: false, latencyMs: null })
        expect(report.infrastructure.storage.error).toContain("node severed from storage")
        expect(report.cluster.status).toBe("healthy")
        expect(report.recommendations.some((r) => r.startsWith("Check the database"))).toBe(true)
        const [readiness, liveness] = yield* probes
        expect(readiness.ready).toBe(false)
        expect(readiness.checks.find((c) => c.name === "storage")).toMatchObject({ ok: false })
        expect(readiness.checks.find((c) => c.name === "quorum")).toMatchObject({ ok: true })
        expect(liveness.alive).toBe(true)
        // the scheduled check sees it too: logged as an error, kept as the latest report
        yield* cluster.eventually(
          Effect.map(health.latest, (latest) =>
            expect(Option.map(latest, (r) => r.overallStatus)).toEqual(Option.some("critical"))
          )
        )
        expect(
          logs.lines.some(
            (l) =>
              l.level === "ERROR" &&
              l.message.startsWith(
                "Cluster health: CRITICAL. Issues: [infrastructure] storage does not answer"
              )
          )
        ).toBe(true)

        database.severed = false
        expect((yield* healthOn(cluster, "node-2")).overallStatus).toBe("healthy")
        expect((yield* probes)[0].ready).toBe(true)
        const [toCritical, backToHealthy] = Chunk.toReadonlyArray(
          yield* Fiber.join(twoChanges).pipe(Effect.timeout("5 seconds"))
        )
        expect(toCritical).toMatchObject({ from: "healthy", to: "critical" })
        expect(toCritical.report.infrastructure.storage.reachable).toBe(false)
        expect(backToHealthy).toMatchObject({ from: "critical", to: "healthy" })
        expect(backToHealthy.at).toBeGreaterThan(toCritical.at)
        expect(logs.lines).toContainEqual({
          level: "INFO",
          message: "Cluster health changed from critical to healthy"
        })
      })
  )

  it.scopedLive(
    "a node whose event loop lags is slow: the cluster is degraded and told to move CPU-bound work off that loop",
    () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.make({
          nodes: 3,
          detector,
          layer: healthLayer({}, (node) => (node === "node-2" ? lagging : calm))
        })
        yield* cluster.awaitConverged()
        const report = yield* healthOn(cluster, "node-3")
        expect(report.overallStatus).toBe("degraded")
        expect(report.cluster.healthyNodes).toBe(2)
        expect(nodeIn(report, "node-2")).toMatchObject({ status: "slow", eventLoopLag: lagging.eventLoopLag })
        expect(report.recommendations.some((r) => r.includes("off the event loop"))).toBe(true)
      }).pipe(quiet)
  )

  it.scopedLive(
    "scheduled checks start after the initial delay, run every interval and keep the last historySize reports, newest first",
    () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.make({
          nodes: 2,
          detector,
          layer: healthLayer({
            ...fast,
            initialDelay: "1500 millis",
            interval: "150 millis",
            historySize: 3,
            checkOnMembershipChange: false
          })
        })
        const health = yield* cluster.on("node-1", Health.Health)
        const self = yield* cluster.on("node-1", Node)
        const full = yield* cluster.eventually(
          Effect.flatMap(health.history, (history) =>
            history.length === 3 ? Effect.succeed(history) : Effect.fail("not full")
          )
        )
        const oldest = full[2]
        expect(oldest.checkedAt - self.self.startedAt).toBeGreaterThanOrEqual(1500)
        expect(full[0].checkedAt - full[1].checkedAt).toBeGreaterThanOrEqual(150)
        expect(full[1].checkedAt - full[2].checkedAt).toBeGreaterThanOrEqual(150)
        expect(yield* health.latest).toEqual(Option.some(full[0]))
        const later = yield* cluster.eventually(
          Effect.flatMap(health.history, (history) =>
            history[2].checkedAt > full[0].checkedAt ? Effect.succeed(history) : Effect.fail("no new reports")
          )
        )
        expect(later.length).toBe(3)
      }).pipe(quiet)
  )

  it.scopedLive(
    "the expected node count comes from ClusterConfig when configured there, and the recommendation names that setting",
    () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.make({
          nodes: 2,
          detector,
          layer: healthLayer().pipe(Layer.provide(ClusterConfig.layer({ expectedNodes: 3 })))
        })
        yield* cluster.awaitConverged()
        const report = yield* healthOn(cluster, "node-1")
        expect(report.cluster).toMatchObject({
          status: "degraded",
          expectedNodes: 3,
          expectedSource: "settings.expectedNodes",
          healthyNodes: 2
        })
        expect(report.recommendations.some((r) => r.includes("set settings.expectedNodes to 2"))).toBe(true)
      }).pipe(quiet)
  )
})

const Flaky = Supervisor.spec("flaky", {
  args: Schema.Struct({}),
  run: () => Effect.zipRight(Effect.sleep("30 millis"), Effect.fail("flaky failed on purpose"))
})

const Steady = Supervisor.spec("steady", { args: Schema.Struct({}), run: () => Effect.never })

describe("Health with Supervisor and Channels", () => {
  it.scopedLive(
    "services list each supervised process with its instances and restarts; channel lanes answer; channel traffic shows in performance",
    () =>
      Effect.gen(function* () {
        // no scheduled check: each check's performance window starts at the previous check of this test
        const app = Health.layer({ initialDelay: "1 minute" }).pipe(
          Layer.provide(Vitals.layerTest(() => calm)),
          Layer.provideMerge(
            Supervisor.layer([Flaky, Steady], { backoffMax: "200 millis", reconcileInterval: "300 millis" })
          ),
          Layer.provideMerge(Registry.layer()),
          Layer.provideMerge(Channels.layer()),
          Layer.provide([
            RegistryStorage.layerMemory(RegistryStorage.makeMemoryStore()),
            SupervisorStorage.layerMemory(SupervisorStorage.makeMemoryStore())
          ])
        )
        const cluster = yield* TestCluster.make({ nodes: 3, detector, layer: app })
        yield* cluster.awaitConverged()
        yield* cluster.on(
          "node-1",
          Effect.flatMap(Supervisor.Supervisor, (s) =>
            Effect.zipRight(s.startSingleton(Flaky, {}), s.startReplicated(Steady, {}))
          )
        )
        const first = yield* cluster.eventually(
          Effect.map(healthOn(cluster, "node-1"), (report) => {
            expect(report.services.totalRegistered).toBe(2)
            expect(report.services.services.find((s) => s.name === "flaky")?.restarts).toBeGreaterThanOrEqual(
              1
            )
            expect(report.services.services.find((s) => s.name === "steady")?.instances.length).toBe(3)
            return report
          })
        )
        expect(first.services).toMatchObject({ status: "healthy", running: 2, notRunning: 0 })
        const steady = first.services.services.find((s) => s.name === "steady")!
        expect(steady).toMatchObject({
          kind: "replicated",
          status: "running",
          expectedInstances: 3,
          restarts: 0
        })
        expect(steady.instances.map((i) => i.node).sort()).toEqual(["node-1", "node-2", "node-3"])
        const flaky = first.services.services.find((s) => s.name === "flaky")!
        expect(flaky).toMatchObject({ kind: "singleton", restart: "permanent", status: "running" })
        expect(flaky.instances.length).toBe(1)

        // the flaky singleton keeps failing: the next check counts its new restarts
        yield* Effect.sleep("600 millis")
        const second = yield* healthOn(cluster, "node-1")
        const flakyAgain = second.services.services.find((s) => s.name === "flaky")!
        expect(flakyAgain.restarts).toBeGreaterThan(flaky.restarts)
        expect(second.recommendations.some((r) => r.startsWith(`singleton "flaky" restarted`))).toBe(true)

        // every channel lane to every peer answers
        const lanes = second.infrastructure.channels
        expect(lanes.available).toBe(true)
        expect(lanes.lanes.map((l) => l.channel).sort()).toEqual(["control", "data", "events", "telemetry"])
        for (const lane of lanes.lanes) {
          expect(lane.up).toEqual(["node-2", "node-3"])
          expect(lane.down).toEqual([])
        }

        // channel traffic in the window since the previous check
        const received = yield* cluster.on("node-2", Channels.subscribe("events"))
        const got = yield* Effect.fork(Stream.runCollect(Stream.take(received, 40)))
        yield* cluster.on(
          "node-1",
          Effect.forEach(
            Array.from({ length: 40 }, (_, i) => i),
            (i) => Channels.broadcast("events", { i }),
            { discard: true }
          )
        )
        yield* Fiber.join(got).pipe(Effect.timeout("5 seconds"))
        const third = yield* healthOn(cluster, "node-1")
        expect(third.performance.channels.published).toBe(40)
        expect(third.performance.channels.sent).toBe(40)
        expect(third.performance.messages).toBeGreaterThanOrEqual(40)
        expect(third.performance.messageThroughputPerSec).toBeGreaterThan(0)
        const receiver = yield* healthOn(cluster, "node-2")
        expect(receiver.performance.channels.received).toBeGreaterThanOrEqual(40)
      }).pipe(quiet)
  )
})
