import * as RunnerAddress from "@effect/cluster/RunnerAddress"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ClusterConfig from "../src/ClusterConfig.js"
import * as Foundation from "../src/Foundation.js"

/** `resolve(settings)` with exactly `env` as the environment. */
const resolveWith = <E = never>(settings: ClusterConfig.Settings<E>, env: Record<string, string> = {}) =>
  Effect.withConfigProvider(
    ClusterConfig.resolve(settings),
    ConfigProvider.fromMap(new Map(Object.entries(env)))
  )

const failureOf = <E>(settings: ClusterConfig.Settings<E>, env: Record<string, string> = {}) =>
  Effect.flip(resolveWith(settings, env))

const translationOf = (resolved: ClusterConfig.Resolved<unknown>): ClusterConfig.Translation => {
  const translation = ClusterConfig.translationOf(resolved)
  if (translation === undefined) throw new Error(`no translation in ${resolved._tag}`)
  return translation
}

const choice = (resolved: ClusterConfig.Resolved<unknown>, setting: string) =>
  resolved.choices.find((c) => c.setting === setting)

const pod = {
  KUBERNETES_SERVICE_HOST: "10.96.0.1",
  POD_IP: "10.1.2.3",
  HOSTNAME: "shop-7d9f-x2k4q",
  DATABASE_URL: "postgres://shop:s3cret@db:5432/shop"
}

const millis = (value: Duration.DurationInput | undefined) =>
  value === undefined ? undefined : Duration.toMillis(Duration.decode(value))

describe("ClusterConfig.resolve: the four modes", () => {
  it.effect("no setting means NoClustering: one node in memory, on loopback ports chosen at start", () =>
    Effect.gen(function* () {
      const resolved = yield* resolveWith({})
      expect(resolved._tag).toBe("NoClustering")
      expect(translationOf(resolved)).toMatchObject({
        strategy: "none",
        nodeId: "foundation",
        host: "127.0.0.1",
        listenHost: "127.0.0.1",
        port: 0,
        runnerPort: 0,
        storage: { _tag: "sqlite", filename: ":memory:" },
        runnerHealth: { _tag: "FailureDetector" },
        runnerTransport: "foundation"
      })
      expect((yield* resolveWith({ cluster: false }))._tag).toBe("NoClustering")
    })
  )

  it.effect("cluster: true is Mortal mode and auto-detects local when nothing else is there", () =>
    Effect.gen(function* () {
      const resolved = yield* resolveWith({ cluster: true })
      expect(resolved._tag).toBe("Mortal")
      if (resolved._tag !== "Mortal") return
      expect(resolved.detected).toBe("local")
      expect(resolved.rule).toContain("no KUBERNETES_SERVICE_HOST and no database URL")
      expect(translationOf(resolved)).toMatchObject({
        strategy: "local",
        host: "127.0.0.1",
        port: 4370,
        runnerPort: 4371,
        nodeId: "foundation@127.0.0.1:4370",
        storage: { _tag: "sqlite", filename: ".foundation/foundation.db" }
      })
    })
  )

  it.effect("a strategy name is Apprentice mode, for each of local, postgres and kubernetes", () =>
    Effect.gen(function* () {
      const local = yield* resolveWith({ cluster: "local", sqliteFile: "/var/lib/app/cluster.db" })
      expect(local._tag).toBe("Apprentice")
      expect(translationOf(local).storage).toEqual({ _tag: "sqlite", filename: "/var/lib/app/cluster.db" })

      const postgres = yield* resolveWith({ cluster: "postgres", databaseUrl: "postgres://u@db:5432/app" })
      expect(postgres._tag === "Apprentice" && postgres.strategy).toBe("postgres")
      expect(translationOf(postgres)).toMatchObject({
        strategy: "postgres",
        storage: { _tag: "postgres", url: "postgres://u@db:5432/app" },
        runnerHealth: { _tag: "FailureDetector" }
      })

      const kubernetes = yield* resolveWith({ cluster: "kubernetes", appName: "shop" }, pod)
      expect(kubernetes._tag === "Apprentice" && kubernetes.strategy).toBe("kubernetes")
      expect(translationOf(kubernetes)).toMatchObject({
        strategy: "kubernetes",
        nodeId: "shop-7d9f-x2k4q",
        host: "10.1.2.3",
        listenHost: "0.0.0.0",
        storage: { _tag: "postgres", url: pod.DATABASE_URL },
        kubernetes: { labelSelector: "app=shop", namespace: undefined },
        runnerHealth: { _tag: "FailureDetector" }
      })
    })
  )

  it.effect("your own node layer is Wizard mode: used unchanged, and no engine setting is even read", () =>
    Effect.gen(function* () {
      const mine = Layer.empty as unknown as Layer.Layer<Foundation.NodeServices>
      // a malformed FOUNDATION_PORT would fail any other mode: Foundation steps aside
      const resolved = yield* resolveWith({ layer: mine, cluster: "bogus" }, { FOUNDATION_PORT: "abc" })
      expect(resolved._tag).toBe("Wizard")
      if (resolved._tag !== "Wizard") return
      expect(resolved.layer).toBe(mine)
      expect(resolved.translation).toBeUndefined()
      expect(ClusterConfig.explain(resolved).layers).toEqual([
        { part: "node", raw: "settings.layer, unchanged" }
      ])
    })
  )

  it.effect("your own ShardingConfig is Wizard mode: used unchanged over the engine's defaults", () =>
    Effect.gen(function* () {
      const resolved = yield* resolveWith(
        {
          cluster: "local",
          shardingConfig: {
            shardsPerGroup: 64,
            runnerAddress: Option.some(RunnerAddress.make("10.0.0.9", 9001))
          }
        },
        { FOUNDATION_SHARDS_PER_GROUP: "12", FOUNDATION_HOST: "10.9.9.9" }
      )
      expect(resolved._tag).toBe("Wizard")
      const translation = translationOf(resolved)
      expect(translation.sharding.shardsPerGroup).toBe(64)
      // the engine's 35 s, because you chose it: no Foundation tuning, no env override
      expect(millis(translation.sharding.shardLockExpiration)).toBe(35_000)
      expect(translation.sharding.shardLockDisableAdvisory).toBe(
        ShardingConfig.defaults.shardLockDisableAdvisory
      )
      expect(translation.host).toBe("10.0.0.9")
      expect(translation.runnerPort).toBe(9001)
      expect(choice(resolved, "host")?.source).toEqual({
        _tag: "Settings",
        field: "settings.shardingConfig.runnerAddress"
      })
    })
  )

  it.effect("a layer and a ShardingConfig together are rejected: the layer carries its own", () =>
    Effect.gen(function* () {
      const error = yield* failureOf({
        layer: Layer.empty as unknown as Layer.Layer<Foundation.NodeServices>,
        shardingConfig: { shardsPerGroup: 10 }
      })
      expect(error._tag).toBe("InvalidSetting")
    })
  )
})

describe("ClusterConfig.resolve: auto-detection (cluster: true)", () => {
  it.effect(
    "inside a Kubernetes pod (KUBERNETES_SERVICE_HOST) it picks kubernetes, even with a database URL",
    () =>
      Effect.gen(function* () {
        const resolved = yield* resolveWith({ cluster: true }, pod)
        expect(resolved._tag === "Mortal" && resolved.detected).toBe("kubernetes")
        expect(choice(resolved, "strategy")?.source).toEqual({
          _tag: "Rule",
          rule: "auto-detected: KUBERNETES_SERVICE_HOST is set: running in a Kubernetes pod"
        })
      })
  )

  it.effect("with a database URL and no Kubernetes it picks postgres, FOUNDATION_DATABASE_URL first", () =>
    Effect.gen(function* () {
      const generic = yield* resolveWith({ cluster: true }, { DATABASE_URL: "postgres://a@db/one" })
      expect(generic._tag === "Mortal" && generic.detected).toBe("postgres")
      expect(translationOf(generic).storage).toEqual({ _tag: "postgres", url: "postgres://a@db/one" })

      const both = yield* resolveWith(
        { cluster: true, databaseUrl: "postgres://b@db/two" },
        { DATABASE_URL: "postgres://a@db/one", FOUNDATION_DATABASE_URL: "postgresql://c@db/three" }
      )
      expect(translationOf(both).storage).toEqual({ _tag: "postgres", url: "postgresql://c@db/three" })
      expect(both._tag === "Mortal" && both.rule).toBe("a database URL is set (env FOUNDATION_DATABASE_URL)")

      // settings.databaseUrl wins over the platform's DATABASE_URL
      const settings = yield* resolveWith(
        { cluster: true, databaseUrl: "postgres://b@db/two" },
        { DATABASE_URL: "postgres://a@db/one" }
      )
      expect(translationOf(settings).storage).toEqual({ _tag: "postgres", url: "postgres://b@db/two" })
    })
  )

  it.effect("an empty KUBERNETES_SERVICE_HOST is not a pod", () =>
    Effect.gen(function* () {
      const resolved = yield* resolveWith({ cluster: true }, { KUBERNETES_SERVICE_HOST: "" })
      expect(resolved._tag === "Mortal" && resolved.detected).toBe("local")
    })
  )

  it.effect("FOUNDATION_CLUSTER overrides the setting in code", () =>
    Effect.gen(function* () {
      const toMortal = yield* resolveWith({ cluster: false }, { FOUNDATION_CLUSTER: "true" })
      expect(toMortal._tag).toBe("Mortal")
      const toApprentice = yield* resolveWith({ cluster: true }, { FOUNDATION_CLUSTER: "local" })
      expect(toApprentice._tag).toBe("Apprentice")
      const off = yield* resolveWith({ cluster: "local" }, { FOUNDATION_CLUSTER: "false" })
      expect(off._tag).toBe("NoClustering")
      expect(choice(off, "mode")?.source).toEqual({ _tag: "Env", variable: "FOUNDATION_CLUSTER" })
    })
  )
})

describe("ClusterConfig.resolve: an unknown strategy is an error, not a silent fallback", () => {
  it.effect("an unknown name in code fails with UnknownStrategy listing the accepted values", () =>
    Effect.gen(function* () {
      const error = yield* failureOf({ cluster: "consul" })
      expect(error).toBeInstanceOf(ClusterConfig.UnknownStrategy)
      expect(error).toMatchObject({
        variable: "settings.cluster",
        value: "consul",
        accepted: ["true", "false", "local", "postgres", "kubernetes"]
      })
      expect(error.message).toContain("Accepted: true, false, local, postgres, kubernetes")
    })
  )

  it.effect("an unknown FOUNDATION_CLUSTER fails the same way, naming the variable", () =>
    Effect.gen(function* () {
      const error = yield* failureOf({ cluster: true }, { FOUNDATION_CLUSTER: "gossip" })
      expect(error).toMatchObject({
        _tag: "UnknownStrategy",
        variable: "FOUNDATION_CLUSTER",
        value: "gossip"
      })
    })
  )
})

describe("ClusterConfig.resolve: the translation uses Foundation's tuned timings", () => {
  it.effect(
    "every mode but Wizard runs with Foundation.shardingDefaults, never the engine's 35 s lock expiry",
    () =>
      Effect.gen(function* () {
        const all = [
          yield* resolveWith({}),
          yield* resolveWith({ cluster: true }),
          yield* resolveWith({ cluster: "postgres", databaseUrl: "postgres://u@db/app" }),
          yield* resolveWith({ cluster: "kubernetes", failureDetection: "engine" }, pod)
        ]
        for (const resolved of all) {
          const sharding = translationOf(resolved).sharding
          expect(sharding).toMatchObject(Foundation.shardingDefaults)
          expect(millis(sharding.shardLockExpiration)).toBe(10_000)
          expect(sharding.shardLockDisableAdvisory).toBe(true)
        }
      })
  )

  it.effect(
    "settings.sharding overrides the tuned values and FOUNDATION_SHARDS_PER_GROUP overrides both",
    () =>
      Effect.gen(function* () {
        const resolved = yield* resolveWith(
          { cluster: "local", sharding: { shardsPerGroup: 30, shardLockExpiration: Duration.seconds(20) } },
          { FOUNDATION_SHARDS_PER_GROUP: "60", FOUNDATION_RUNNER_SHARD_WEIGHT: "2" }
        )
        const sharding = translationOf(resolved).sharding
        expect(sharding.shardsPerGroup).toBe(60)
        expect(sharding.runnerShardWeight).toBe(2)
        expect(millis(sharding.shardLockExpiration)).toBe(20_000)
        expect(choice(resolved, "sharding.shardsPerGroup")).toEqual({
          setting: "sharding.shardsPerGroup",
          value: "60",
          source: { _tag: "Env", variable: "FOUNDATION_SHARDS_PER_GROUP" }
        })
        expect(choice(resolved, "sharding.shardLockExpiration")?.source).toEqual({
          _tag: "Settings",
          field: "settings.sharding.shardLockExpiration"
        })
      })
  )
})

describe("ClusterConfig.resolve: environment overrides", () => {
  it.effect("FOUNDATION_* variables override the settings in code, and each choice names its source", () =>
    Effect.gen(function* () {
      const resolved = yield* resolveWith(
        { cluster: "postgres", appName: "code", port: 5000, host: "10.0.0.1", expectedNodes: 2 },
        {
          FOUNDATION_APP_NAME: "shop",
          FOUNDATION_EXPECTED_NODES: "5",
          FOUNDATION_HOST: "10.0.0.7",
          FOUNDATION_LISTEN_HOST: "0.0.0.0",
          FOUNDATION_PORT: "7001",
          FOUNDATION_RUNNER_PORT: "7101",
          FOUNDATION_NODE_ID: " shop-1 ",
          FOUNDATION_DATABASE_URL: "postgres://u@db:5432/shop",
          FOUNDATION_TABLE_PREFIX: "shop",
          FOUNDATION_FAILURE_DETECTION: "engine"
        }
      )
      expect(resolved.appName).toBe("shop")
      expect(resolved.expectedNodes).toBe(5)
      expect(translationOf(resolved)).toMatchObject({
        nodeId: "shop-1",
        host: "10.0.0.7",
        listenHost: "0.0.0.0",
        port: 7001,
        runnerPort: 7101,
        tablePrefix: "shop",
        failureDetection: "engine",
        runnerHealth: { _tag: "Ping" },
        runnerTransport: "engine"
      })
      expect(choice(resolved, "runnerTransport")?.source).toEqual({
        _tag: "Rule",
        rule: "failure detection engine: the engine's RunnerServer"
      })
      expect(choice(resolved, "port")?.source).toEqual({ _tag: "Env", variable: "FOUNDATION_PORT" })
      expect(choice(resolved, "expectedNodes")?.source).toEqual({
        _tag: "Env",
        variable: "FOUNDATION_EXPECTED_NODES"
      })
    })
  )

  it.effect("settings in code apply when no variable is set", () =>
    Effect.gen(function* () {
      const resolved = yield* resolveWith({ cluster: "local", appName: "shop", port: 5000, expectedNodes: 3 })
      expect(resolved.expectedNodes).toBe(3)
      expect(translationOf(resolved)).toMatchObject({ port: 5000, nodeId: "shop@127.0.0.1:5000" })
      expect(choice(resolved, "port")?.source).toEqual({ _tag: "Settings", field: "settings.port" })
    })
  )

  it.effect("kubernetes: FOUNDATION_K8S_SELECTOR, FOUNDATION_K8S_NAMESPACE and FOUNDATION_POD_IP", () =>
    Effect.gen(function* () {
      const resolved = yield* resolveWith(
        { cluster: "kubernetes", failureDetection: "engine" },
        {
          ...pod,
          FOUNDATION_POD_IP: "10.1.2.99",
          FOUNDATION_K8S_SELECTOR: "app=shop,tier=backend",
          FOUNDATION_K8S_NAMESPACE: "prod"
        }
      )
      expect(translationOf(resolved)).toMatchObject({
        host: "10.1.2.99",
        kubernetes: { labelSelector: "app=shop,tier=backend", namespace: "prod" },
        runnerHealth: { _tag: "K8s", labelSelector: "app=shop,tier=backend", namespace: "prod" }
      })
      expect(choice(resolved, "host")?.source).toEqual({ _tag: "Env", variable: "FOUNDATION_POD_IP" })
    })
  )

  it.effect(
    "a bad value fails with InvalidSetting naming the variable, the value and the expected form",
    () =>
      Effect.gen(function* () {
        const cases: ReadonlyArray<readonly [Record<string, string>, string, string]> = [
          [{ FOUNDATION_PORT: "abc" }, "FOUNDATION_PORT", "a TCP port, 1 to 65535"],
          [{ FOUNDATION_RUNNER_PORT: "70000" }, "FOUNDATION_RUNNER_PORT", "a TCP port"],
          [{ FOUNDATION_EXPECTED_NODES: "0" }, "FOUNDATION_EXPECTED_NODES", "a positive integer"],
          [{ FOUNDATION_EXPECTED_NODES: "three" }, "FOUNDATION_EXPECTED_NODES", "a positive integer"],
          [{ FOUNDATION_SHARDS_PER_GROUP: "-1" }, "FOUNDATION_SHARDS_PER_GROUP", "a positive integer"],
          [{ FOUNDATION_APP_NAME: "my app!" }, "FOUNDATION_APP_NAME", "a Kubernetes label value"],
          [{ FOUNDATION_HOST: "" }, "FOUNDATION_HOST", "a host name or IP address"],
          [{ FOUNDATION_DATABASE_URL: "mysql://db/app" }, "FOUNDATION_DATABASE_URL", "a PostgreSQL URL"],
          [{ FOUNDATION_TABLE_PREFIX: "a-b" }, "FOUNDATION_TABLE_PREFIX", "letters, digits and underscores"],
          [{ FOUNDATION_FAILURE_DETECTION: "fast" }, "FOUNDATION_FAILURE_DETECTION", "foundation or engine"],
          [{ FOUNDATION_NODE_ID: "  " }, "FOUNDATION_NODE_ID", "a non-empty node id"],
          [{ FOUNDATION_LISTEN_HOST: "every host" }, "FOUNDATION_LISTEN_HOST", "a local address to bind"],
          [{ FOUNDATION_RUNNER_SHARD_WEIGHT: "0" }, "FOUNDATION_RUNNER_SHARD_WEIGHT", "a positive integer"]
        ]
        for (const [env, variable, expected] of cases) {
          const error = yield* failureOf({ cluster: "postgres", databaseUrl: "postgres://u@db/app" }, env)
          expect(error).toBeInstanceOf(ClusterConfig.InvalidSetting)
          expect(error).toMatchObject({ variable, value: Object.values(env)[0] })
          expect((error as ClusterConfig.InvalidSetting).expected).toContain(expected)
          expect(error.message).toContain(variable)
        }
        const k8sCases: ReadonlyArray<readonly [Record<string, string>, string]> = [
          [{ POD_IP: "not-an-ip" }, "POD_IP"],
          [{ FOUNDATION_POD_IP: "10.1.2" }, "FOUNDATION_POD_IP"],
          [{ FOUNDATION_K8S_SELECTOR: "app=shop;drop" }, "FOUNDATION_K8S_SELECTOR"],
          [{ FOUNDATION_K8S_NAMESPACE: "Prod" }, "FOUNDATION_K8S_NAMESPACE"],
          [{ DATABASE_URL: "mysql://db/app" }, "DATABASE_URL"]
        ]
        for (const [env, variable] of k8sCases) {
          const error = yield* failureOf({ cluster: true }, { ...pod, ...env })
          expect(error).toMatchObject({ _tag: "InvalidSetting", variable })
        }
      })
  )

  it.effect("a bad value in code fails the same way, naming the settings field", () =>
    Effect.gen(function* () {
      const error = yield* failureOf({ cluster: "local", port: 70000 })
      expect(error).toMatchObject({ _tag: "InvalidSetting", variable: "settings.port", value: "70000" })
      const expected = yield* failureOf({ expectedNodes: 0 })
      expect(expected).toMatchObject({ _tag: "InvalidSetting", variable: "settings.expectedNodes" })
    })
  )

  it.effect("a strategy missing what it needs fails with MissingSetting naming where to set it", () =>
    Effect.gen(function* () {
      const postgres = yield* failureOf({ cluster: "postgres" })
      expect(postgres).toMatchObject({
        _tag: "MissingSetting",
        strategy: "postgres",
        variables: ["FOUNDATION_DATABASE_URL", "settings.databaseUrl", "DATABASE_URL"]
      })
      const noPodIp = yield* failureOf({ cluster: "kubernetes" }, { DATABASE_URL: pod.DATABASE_URL })
      expect(noPodIp).toMatchObject({ _tag: "MissingSetting", strategy: "kubernetes" })
      expect(noPodIp.message).toContain("FOUNDATION_POD_IP")
      expect(noPodIp.message).toContain("status.podIP")
      const noDatabase = yield* failureOf(
        { cluster: true },
        { KUBERNETES_SERVICE_HOST: "10.96.0.1", POD_IP: "10.1.2.3" }
      )
      expect(noDatabase).toMatchObject({ _tag: "MissingSetting", strategy: "kubernetes" })
    })
  )
})

describe("ClusterConfig.explain", () => {
  it.effect("returns each chosen value with its source, and the raw layers", () =>
    Effect.gen(function* () {
      const resolved = yield* resolveWith(
        { cluster: true, appName: "shop" },
        { ...pod, FOUNDATION_PORT: "7001" }
      )
      const explanation = ClusterConfig.explain(resolved)
      expect(explanation.mode).toBe("Mortal")
      expect(explanation.strategy).toBe("kubernetes")
      expect(explanation.choices).toContainEqual({
        setting: "host",
        value: "10.1.2.3",
        source: { _tag: "Env", variable: "POD_IP" }
      })
      expect(explanation.choices).toContainEqual({
        setting: "kubernetes.labelSelector",
        value: "app=shop",
        source: { _tag: "Rule", rule: "app=<app name>" }
      })
      expect(explanation.choices).toContainEqual({
        setting: "sharding.shardLockExpiration",
        value: "10s",
        source: { _tag: "Rule", rule: "Foundation.shardingDefaults (the engine's default: 35s)" }
      })
      expect(explanation.layers.map((layer) => layer.part)).toEqual([
        "node",
        "sharding",
        "transport",
        "storage",
        "health"
      ])
      expect(explanation.layers.find((layer) => layer.part === "sharding")?.raw).toBe(
        'ShardingConfig.layer({ ...Foundation.shardingDefaults, runnerAddress: Option.some(RunnerAddress.make("10.1.2.3", 4371)) })'
      )
    })
  )

  it.effect("as text: the mode and why, a row per value with its source, the raw calls; no password", () =>
    Effect.gen(function* () {
      const resolved = yield* resolveWith(
        { cluster: true, appName: "shop" },
        { ...pod, FOUNDATION_FAILURE_DETECTION: "engine", FOUNDATION_SHARDS_PER_GROUP: "60" }
      )
      const text = ClusterConfig.explainText(resolved)
      const lines = text.split("\n")
      expect(lines[0]).toBe(
        "Cluster configuration: Mortal: auto-detected kubernetes (KUBERNETES_SERVICE_HOST is set: running in a Kubernetes pod)"
      )
      const row = (setting: string) => lines.find((line) => line.trim().startsWith(`${setting} `))
      expect(row("host")).toMatch(/host\s+10\.1\.2\.3\s+env POD_IP/)
      expect(row("listenHost")).toMatch(/0\.0\.0\.0\s+kubernetes: a pod binds every interface/)
      expect(row("nodeId")).toMatch(/shop-7d9f-x2k4q\s+env HOSTNAME/)
      expect(row("storage")).toMatch(/postgres postgres:\/\/shop:\*\*\*@db:5432\/shop\s+env DATABASE_URL/)
      expect(row("sharding.shardsPerGroup")).toMatch(/60\s+env FOUNDATION_SHARDS_PER_GROUP/)
      expect(row("runnerHealth")).toMatch(/the Kubernetes API: pods matching app=shop/)
      expect(text).toContain('RunnerHealth.layerK8s({ labelSelector: "app=shop" })')
      expect(text).toContain("ShardingConfig.layer({ ...Foundation.shardingDefaults, shardsPerGroup: 60")
      expect(text).not.toContain("s3cret")
    })
  )

  it.effect("as text in every mode: the summary line says the mode and what it rests on", () =>
    Effect.gen(function* () {
      const firstLine = (resolved: ClusterConfig.Resolved<unknown>) =>
        ClusterConfig.explainText(resolved).split("\n")[0]
      expect(firstLine(yield* resolveWith({}))).toBe(
        "Cluster configuration: NoClustering: one node, in memory"
      )
      expect(firstLine(yield* resolveWith({ cluster: true }, { DATABASE_URL: "postgres://u@db/app" }))).toBe(
        "Cluster configuration: Mortal: auto-detected postgres (a database URL is set (env DATABASE_URL))"
      )
      expect(firstLine(yield* resolveWith({ cluster: "local" }))).toBe(
        "Cluster configuration: Apprentice: strategy local"
      )
      const mine = Layer.empty as unknown as Layer.Layer<Foundation.NodeServices>
      expect(firstLine(yield* resolveWith({ layer: mine }))).toBe(
        "Cluster configuration: Wizard: your node layer, used unchanged"
      )
      const sharding = yield* resolveWith({ cluster: "local", shardingConfig: { shardsPerGroup: 64 } })
      expect(firstLine(sharding)).toBe(
        "Cluster configuration: Wizard: your ShardingConfig, used unchanged (strategy local)"
      )
      const text = ClusterConfig.explainText(sharding)
      expect(text).toMatch(/sharding\.shardsPerGroup\s+64\s+settings\.shardingConfig\.shardsPerGroup/)
      expect(text).toContain("ShardingConfig.layer({ ...ShardingConfig.defaults, shardsPerGroup: 64")
      // without clustering the ports are picked at start, and the text says so
      expect(ClusterConfig.explainText(yield* resolveWith({}))).toMatch(
        /port\s+chosen at start\s+no clustering: a free loopback port, chosen at start/
      )
    })
  )

  it.effect("the resolved configuration is a service: ClusterConfig.layer", () =>
    Effect.gen(function* () {
      const resolved = yield* ClusterConfig.ClusterConfig.pipe(
        Effect.provide(ClusterConfig.layer({ cluster: "local", expectedNodes: 3 }))
      )
      expect(resolved._tag).toBe("Apprentice")
      expect(resolved.expectedNodes).toBe(3)
    }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))
  )
})
