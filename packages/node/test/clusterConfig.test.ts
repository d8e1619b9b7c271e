import * as K8sHttpClient from "@effect/cluster/K8sHttpClient"
import * as RunnerAddress from "@effect/cluster/RunnerAddress"
import * as RunnerHealth from "@effect/cluster/RunnerHealth"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import * as ClusterConfig from "@foundation/core/ClusterConfig"
import type * as Foundation from "@foundation/core/Foundation"
import { Node } from "@foundation/core/Node"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as FoundationNode from "../src/FoundationNode.js"
import * as NodeClusterConfig from "../src/NodeClusterConfig.js"
import * as Sample from "../src/Sample.js"
import * as SocketTransport from "../src/SocketTransport.js"
import { freshPrefix, postgresUrl, sharedPostgres, sharedSqlite, waitUntil } from "./utils.js"

const providerOf = (env: Record<string, string>) => ConfigProvider.fromMap(new Map(Object.entries(env)))

const resolveWith = <E = never>(settings: ClusterConfig.Settings<E>, env: Record<string, string> = {}) =>
  Effect.withConfigProvider(ClusterConfig.resolve(settings), providerOf(env))

const translationOf = (resolved: ClusterConfig.Resolved<unknown>) => {
  const translation = ClusterConfig.translationOf(resolved)
  if (translation === undefined) throw new Error(`no translation in ${resolved._tag}`)
  return translation
}

const pod = {
  KUBERNETES_SERVICE_HOST: "10.96.0.1",
  POD_IP: "10.1.2.3",
  HOSTNAME: "shop-7d9f-x2k4q",
  DATABASE_URL: "postgres://shop:s3cret@db:5432/shop"
}

/** A temporary directory, removed when the scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "foundation-cluster-config-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** Builds the node of `settings` with the sample application on top, in the test's scope. */
const startFromSettings = (settings: ClusterConfig.Settings, env: Record<string, string>) =>
  Effect.gen(function* () {
    const node = NodeClusterConfig.layerFromSettings(settings)
    const context = yield* Layer.build(
      Layer.provideMerge(
        Sample.layer(() => Effect.void),
        node
      )
    ).pipe(Effect.withConfigProvider(providerOf(env)))
    return {
      context,
      run: <A, E, R extends Foundation.NodeServices | ClusterConfig.ClusterConfig>(
        effect: Effect.Effect<A, E, R>
      ) => Effect.provide(effect, context)
    }
  })

/** Where the sample `Greeter` entities with these ids run, asked through `node`. */
const placements = (
  node: Effect.Effect.Success<ReturnType<typeof startFromSettings>>,
  ids: ReadonlyArray<string>
) =>
  node.run(
    Effect.flatMap(Sample.Greeter.client, (client) =>
      Effect.forEach(ids, (id) => client(id).Where().pipe(Effect.timeout("10 seconds"), Effect.orDie))
    )
  )

describe("NodeClusterConfig: the FoundationNode options of each translation", () => {
  it.effect("local, postgres and kubernetes carry their storage, addresses and tuned sharding", () =>
    Effect.gen(function* () {
      const local = NodeClusterConfig.nodeOptions(translationOf(yield* resolveWith({ cluster: "local" })))
      expect(local).toMatchObject({
        id: "foundation@127.0.0.1:4370",
        host: "127.0.0.1",
        listenHost: "127.0.0.1",
        port: 4370,
        runnerPort: 4371,
        storage: { _tag: "sqlite", filename: ".foundation/foundation.db" },
        failureDetection: "foundation"
      })
      expect(local.sharding?.shardLockDisableAdvisory).toBe(true)

      const postgres = NodeClusterConfig.nodeOptions(
        translationOf(
          yield* resolveWith(
            { cluster: "postgres" },
            { FOUNDATION_DATABASE_URL: "postgres://u@db/app", FOUNDATION_TABLE_PREFIX: "shop" }
          )
        )
      )
      expect(postgres).toMatchObject({
        storage: { _tag: "postgres", url: "postgres://u@db/app" },
        tablePrefix: "shop"
      })

      const k8s = NodeClusterConfig.nodeOptions(translationOf(yield* resolveWith({ cluster: true }, pod)))
      expect(k8s).toMatchObject({
        id: "shop-7d9f-x2k4q",
        host: "10.1.2.3",
        listenHost: "0.0.0.0",
        storage: { _tag: "postgres", url: pod.DATABASE_URL }
      })
    })
  )

  it.effect("Wizard with your own layer gives back that very layer", () =>
    Effect.gen(function* () {
      const mine = Layer.empty as unknown as Layer.Layer<Foundation.NodeServices, "mine">
      const resolved = yield* resolveWith({ layer: mine })
      const node: Layer.Layer<Foundation.NodeServices, FoundationNode.StartError | "mine"> =
        NodeClusterConfig.layer(resolved)
      expect(node).toBe(mine)
    })
  )

  it.effect("kubernetes with engine failure detection is a typed node layer (built only in a pod)", () =>
    Effect.gen(function* () {
      const resolved = yield* resolveWith({ cluster: true, failureDetection: "engine" }, pod)
      expect(translationOf(resolved).runnerHealth).toEqual({
        _tag: "K8s",
        labelSelector: "app=foundation",
        namespace: undefined
      })
      const node: Layer.Layer<Foundation.NodeServices, FoundationNode.StartError> =
        NodeClusterConfig.layer(resolved)
      expect(Layer.isLayer(node)).toBe(true)
    })
  )
})

describe("NodeClusterConfig: the engine's k8s runner health", () => {
  const podJson = (ip: string, ready: boolean) => ({
    status: {
      phase: "Running",
      podIP: ip,
      hostIP: "192.168.0.1",
      conditions: [
        { type: "Initialized", status: "True", lastTransitionTime: "2024-01-01T00:00:00Z" },
        { type: "Ready", status: ready ? "True" : "False", lastTransitionTime: "2024-01-01T00:00:05Z" }
      ]
    }
  })

  it.effect(
    "asks the Kubernetes API for the pods of the selector: a runner is alive while its pod is ready",
    () =>
      Effect.gen(function* () {
        const requests: Array<string> = []
        const api = HttpClient.make((request, url) =>
          Effect.sync(() => {
            requests.push(url.toString())
            const items = [podJson("10.1.2.3", true), podJson("10.1.2.4", false)]
            return HttpClientResponse.fromWeb(request, new Response(JSON.stringify({ items })))
          })
        ).pipe(HttpClient.mapRequest(HttpClientRequest.prependUrl("https://kubernetes.default.svc/api")))
        const resolved = yield* resolveWith(
          { cluster: "kubernetes", failureDetection: "engine" },
          { ...pod, FOUNDATION_K8S_SELECTOR: "app=shop,tier=backend", FOUNDATION_K8S_NAMESPACE: "prod" }
        )
        const kubernetes = translationOf(resolved).kubernetes!
        const alive = yield* Effect.gen(function* () {
          const health = yield* RunnerHealth.RunnerHealth
          return yield* Effect.all([
            health.isAlive(RunnerAddress.make("10.1.2.3", 4371)),
            health.isAlive(RunnerAddress.make("10.1.2.4", 4371)),
            health.isAlive(RunnerAddress.make("10.1.2.5", 4371))
          ])
        }).pipe(
          Effect.provide(
            NodeClusterConfig.layerK8sRunnerHealth(kubernetes).pipe(
              Layer.provide(Layer.succeed(K8sHttpClient.K8sHttpClient, api))
            )
          )
        )
        expect(alive).toEqual([true, false, false])
        expect(requests).toHaveLength(1) // cached for 10 s by the engine
        const url = new URL(requests[0])
        expect(url.pathname).toBe("/api/v1/namespaces/prod/pods")
        expect(url.searchParams.get("labelSelector")).toBe("app=shop,tier=backend")
        expect(url.searchParams.get("fieldSelector")).toBe("status.phase=Running")
      })
  )
})

describe("NodeClusterConfig: the engine's runner health in engine mode", () => {
  it.effect("only kubernetes with engine failure detection replaces the engine's ping", () =>
    Effect.gen(function* () {
      const options = (settings: ClusterConfig.Settings, env: Record<string, string> = {}) =>
        Effect.map(resolveWith(settings, env), (resolved) =>
          NodeClusterConfig.nodeOptions(translationOf(resolved))
        )
      const k8s = yield* options({ cluster: "kubernetes", failureDetection: "engine" }, pod)
      expect(Layer.isLayer(k8s.engineRunnerHealth)).toBe(true)
      expect((yield* options({ cluster: "kubernetes" }, pod)).engineRunnerHealth).toBeUndefined()
      expect(
        (yield* options({ cluster: "local", failureDetection: "engine" })).engineRunnerHealth
      ).toBeUndefined()
    })
  )

  it.scopedLive(
    "a node in engine mode asks the engineRunnerHealth it is given whether the runners are alive",
    () =>
      Effect.gen(function* () {
        const sql = yield* sharedSqlite
        const ports = yield* SocketTransport.freePorts(4)
        const asked = new Set<string>()
        const recording = Layer.succeed(
          RunnerHealth.RunnerHealth,
          RunnerHealth.RunnerHealth.of({
            isAlive: (address) =>
              Effect.sync(() => asked.add(`${address.host}:${address.port}`)).pipe(Effect.as(true))
          })
        )
        for (const i of [0, 1]) {
          const resolved = yield* resolveWith({
            cluster: "local",
            failureDetection: "engine",
            nodeId: `n${i + 1}`,
            port: ports[i * 2],
            runnerPort: ports[i * 2 + 1]
          })
          yield* FoundationNode.start({
            ...NodeClusterConfig.nodeOptions(translationOf(resolved)),
            storage: sql,
            engineRunnerHealth: recording
          })
        }
        // the engine checks its runners every runnerHealthCheckInterval (1 s) once there are two
        const runners = [`127.0.0.1:${ports[1]}`, `127.0.0.1:${ports[3]}`]
        yield* waitUntil(
          "the engine to ask the given runner health about both runners",
          Effect.sync(() => (runners.every((runner) => asked.has(runner)) ? true : undefined)),
          { timeoutMs: 15_000, intervalMs: 100 }
        )
      }).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
  )
})

describe("NodeClusterConfig: resolved configurations start real nodes", () => {
  it.scopedLive("a resolved local config starts a node on SQLite that hosts entities", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const [port, runnerPort] = yield* SocketTransport.freePorts(2)
      const node = yield* startFromSettings(
        { cluster: "local", appName: "shop" },
        {
          FOUNDATION_SQLITE_FILE: Path.join(dir, "cluster.db"),
          FOUNDATION_PORT: String(port),
          FOUNDATION_RUNNER_PORT: String(runnerPort)
        }
      )
      const self = yield* node.run(Effect.map(Node, (n) => n.self))
      expect(self.id).toBe(`shop@127.0.0.1:${port}`)
      expect(self.address.port).toBe(port)
      expect(self.runnerAddress).toEqual(RunnerAddress.make("127.0.0.1", runnerPort))
      const resolved = yield* node.run(ClusterConfig.ClusterConfig)
      expect(resolved._tag).toBe("Apprentice")
      const answers = yield* placements(node, ["user-1", "user-2"])
      expect(answers.map((p) => p.node)).toEqual([self.id, self.id])
      expect(Fs.existsSync(Path.join(dir, "cluster.db"))).toBe(true)
    }).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
  )

  it.scopedLive("no clustering starts one node in memory, on free loopback ports", () =>
    Effect.gen(function* () {
      const node = yield* startFromSettings({}, {})
      const self = yield* node.run(Effect.map(Node, (n) => n.self))
      expect(self.id).toBe("foundation")
      expect(self.address.host).toBe("127.0.0.1")
      expect(self.address.port).toBeGreaterThan(0)
      expect(self.runnerAddress.port).toBeGreaterThan(0)
      const answers = yield* placements(node, ["user-1"])
      expect(answers[0].node).toBe("foundation")
    }).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
  )

  const pgUrl = postgresUrl("NodeClusterConfig on PostgreSQL")
  it.scopedLive.skipIf(!pgUrl)("a resolved postgres config (auto-detected from the URL) starts a node", () =>
    Effect.gen(function* () {
      const prefix = yield* freshPrefix(yield* sharedPostgres(pgUrl!), "cc")
      const [port, runnerPort] = yield* SocketTransport.freePorts(2)
      const node = yield* startFromSettings(
        { cluster: true },
        {
          DATABASE_URL: pgUrl!,
          FOUNDATION_TABLE_PREFIX: prefix,
          FOUNDATION_PORT: String(port),
          FOUNDATION_RUNNER_PORT: String(runnerPort)
        }
      )
      const resolved = yield* node.run(ClusterConfig.ClusterConfig)
      expect(resolved._tag === "Mortal" && resolved.detected).toBe("postgres")
      const self = yield* node.run(Effect.map(Node, (n) => n.self))
      const answers = yield* placements(node, ["user-1"])
      expect(answers[0].node).toBe(self.id)
    }).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
  )
})
