/**
 * Cluster configuration: one setting turned into the engine settings and layers of a node, with an
 * explanation of every value chosen and where it came from.
 *
 * The four modes of `resolve` (the seed's `Foundation.ClusterConfig`, re-thought for this engine,
 * where membership comes from the runner storage rather than from node discovery):
 * - `NoClustering` (`cluster: false`, the default): one node, in memory (SQLite `:memory:`, loopback
 *   endpoints on ports chosen at start);
 * - `Mortal` (`cluster: true`): the strategy is auto-detected, in this order: `kubernetes` when
 *   `KUBERNETES_SERVICE_HOST` is set, `postgres` when a database URL is set, `local` otherwise;
 * - `Apprentice` (`cluster: "local" | "postgres" | "kubernetes"`): that strategy is translated;
 * - `Wizard` (`layer` or `shardingConfig` given): Foundation steps aside. Your node layer is used
 *   unchanged, or your `ShardingConfig` replaces Foundation's tuned one unchanged.
 *
 * A strategy name it does not know is a typed `UnknownStrategy` listing the accepted values. The seed
 * logged a warning and fell back to auto-detection; a typo that silently picks another topology is
 * worse than an error at start, so this is a deliberate change.
 *
 * Every value is read through the current `ConfigProvider` with `effect/Config` (the environment by
 * default; `ConfigProvider.fromMap` in tests). Precedence: a `FOUNDATION_*` variable overrides the
 * setting in code, which overrides the platform's variables (`DATABASE_URL`, `POD_IP`, `HOSTNAME`)
 * and the rules. A bad value fails with `InvalidSetting`, naming the variable and the form expected.
 *
 * This module is the platform-independent half: it produces data (`Translation`, `explain`).
 * `@foundation/node`'s `NodeClusterConfig.layer` turns it into the node's layers. The raw
 * equivalent of every translation is `Foundation.layerNode(options, parts)` with
 * `ShardingConfig.layer({ ...Foundation.shardingDefaults, ...overrides, runnerAddress })`: never
 * the engine's 35 s lock expiry (`ShardingConfig.defaults`), except in `Wizard` mode where you chose.
 */
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Foundation from "./Foundation.js"

// -----------------------------------------------------------------------------
// Models
// -----------------------------------------------------------------------------

/** The strategies a name can select (`Apprentice`) or auto-detection can pick (`Mortal`). */
export const strategies = ["local", "postgres", "kubernetes"] as const

/**
 * - `local`: the embedded default, one process: SQLite in `.foundation/foundation.db`;
 * - `postgres`: nodes in several processes or hosts sharing a PostgreSQL database;
 * - `kubernetes`: pods sharing a PostgreSQL database, addressed by their pod IP.
 */
export type Strategy = (typeof strategies)[number]

/** The values `cluster` (and `FOUNDATION_CLUSTER`) accept. */
export const acceptedClusterValues: ReadonlyArray<string> = ["true", "false", ...strategies]

/**
 * Where the node keeps the engine's runners, shard leases and messages and Foundation's directory:
 * SQLite (a file, or `":memory:"`) or PostgreSQL. The same shape as `@foundation/node`'s
 * `SqlStorage.Storage`.
 */
export type Storage =
  | { readonly _tag: "sqlite"; readonly filename: string }
  | { readonly _tag: "postgres"; readonly url: string }

/** What the engine's k8s runner health asks the Kubernetes API for (`RunnerHealth.layerK8s`). */
export interface Kubernetes {
  /** `FOUNDATION_K8S_SELECTOR`, or `app=<app name>` */
  readonly labelSelector: string
  /** `FOUNDATION_K8S_NAMESPACE`; `undefined` lists pods of every namespace */
  readonly namespace: string | undefined
}

/**
 * Who answers the engine's `RunnerHealth`:
 * - `FailureDetector`: Foundation's detector (`FailureDetector.layerRunnerHealth`, the default);
 * - `Ping`: the engine alone pings runners (`RunnerHealth.layerPing`, failure detection `engine`);
 * - `K8s`: the engine alone asks the Kubernetes API whether the runner's pod is ready
 *   (`RunnerHealth.layerK8s`, failure detection `engine` on the `kubernetes` strategy).
 */
export type RunnerHealth =
  | { readonly _tag: "FailureDetector" }
  | { readonly _tag: "Ping" }
  | ({ readonly _tag: "K8s" } & Kubernetes)

/**
 * A setting translated: everything a platform needs to build the node's layers (ShardingConfig,
 * transport, storage, health). `port` and `runnerPort` are `0` when the platform picks free loopback
 * ports at start (`NoClustering`).
 */
export interface Translation {
  /** `none` for `NoClustering` */
  readonly strategy: Strategy | "none"
  readonly nodeId: string
  /** the host peers reach this node on */
  readonly host: string
  /** the host both endpoints bind */
  readonly listenHost: string
  /** Foundation's node endpoint */
  readonly port: number
  /** the engine's runner endpoint (`ShardingConfig.runnerAddress`) */
  readonly runnerPort: number
  readonly storage: Storage
  readonly tablePrefix: string | undefined
  readonly failureDetection: Foundation.FailureDetection
  readonly runnerHealth: RunnerHealth
  /** how runners call each other (`Foundation.NodeOptions.runnerTransport`) */
  readonly runnerTransport: "foundation" | "engine"
  /** set on the `kubernetes` strategy (used by the runner health in `engine` mode) */
  readonly kubernetes: Kubernetes | undefined
  /**
   * the `ShardingConfig` fields the node runs with (the runner address is added from `host` and
   * `runnerPort`): `Foundation.shardingDefaults` and your overrides, or in `Wizard` mode your
   * `ShardingConfig` over `ShardingConfig.defaults`
   */
  readonly sharding: Partial<ShardingConfig.ShardingConfig["Type"]>
}

/** Where a chosen value came from. */
export type Source =
  | { readonly _tag: "Env"; readonly variable: string }
  | { readonly _tag: "Settings"; readonly field: string }
  | { readonly _tag: "Rule"; readonly rule: string }

/** One chosen value, rendered as text, and where it came from. */
export interface Choice {
  readonly setting: string
  readonly value: string
  readonly source: Source
}

interface Common {
  /** `FOUNDATION_APP_NAME`, `appName` or `foundation` */
  readonly appName: string
  /** how many nodes a healthy cluster has: `FOUNDATION_EXPECTED_NODES`, `expectedNodes` or 1 */
  readonly expectedNodes: number
  /** every value chosen, in order, with its source (see `explain`) */
  readonly choices: ReadonlyArray<Choice>
}

/**
 * The outcome of `resolve`: one of the four modes. `E` is the error type of your own node layer in
 * `Wizard` mode.
 */
export type Resolved<E = never> = Data.TaggedEnum<{
  /** `cluster: false`: one node, in memory */
  NoClustering: Common & { readonly translation: Translation }
  /** `cluster: true`: `detected` was picked because `rule` held */
  Mortal: Common & { readonly detected: Strategy; readonly rule: string; readonly translation: Translation }
  /** `cluster: <strategy>` */
  Apprentice: Common & { readonly strategy: Strategy; readonly translation: Translation }
  /**
   * Foundation steps aside: `layer` (your node layer) is used unchanged, or, when you gave a
   * `ShardingConfig`, `translation` carries it unchanged
   */
  Wizard: Common & {
    readonly layer: Layer.Layer<Foundation.NodeServices, E> | undefined
    readonly translation: Translation | undefined
  }
}>

interface ResolvedDefinition extends Data.TaggedEnum.WithGenerics<1> {
  readonly taggedEnum: Resolved<this["A"]>
}

/**
 * Constructors and matchers of `Resolved` (`Data.taggedEnum`): `Resolved.Mortal({...})`,
 * `Resolved.$is("Wizard")`, `Resolved.$match(...)`.
 */
export const Resolved = Data.taggedEnum<ResolvedDefinition>()

/** `cluster: false`. */
export type NoClustering = Extract<Resolved, { readonly _tag: "NoClustering" }>
/** `cluster: true`. */
export type Mortal = Extract<Resolved, { readonly _tag: "Mortal" }>
/** `cluster: <strategy>`. */
export type Apprentice = Extract<Resolved, { readonly _tag: "Apprentice" }>
/** Your own layer or `ShardingConfig`. */
export type Wizard<E = never> = Extract<Resolved<E>, { readonly _tag: "Wizard" }>

/** The translation a platform builds from: `undefined` only for a `Wizard` with your own layer. */
export const translationOf = <E>(resolved: Resolved<E>): Translation | undefined => resolved.translation

/**
 * What you write. Everything is optional: `{}` is `NoClustering`, `{ cluster: true }` auto-detects.
 * The `FOUNDATION_*` variable named on each field overrides it.
 */
export interface Settings<E = never> {
  /**
   * `false` (default): no clustering; `true`: auto-detect; a strategy name: that strategy
   * (`FOUNDATION_CLUSTER`: `true`, `false` or a strategy name). Anything else is `UnknownStrategy`.
   */
  readonly cluster?: boolean | Strategy | (string & {}) | undefined
  /** the application's name (`FOUNDATION_APP_NAME`, default `foundation`) */
  readonly appName?: string | undefined
  /** this node's id (`FOUNDATION_NODE_ID`; default the pod name on Kubernetes, else `<app>@<host>:<port>`) */
  readonly nodeId?: string | undefined
  /** the number of nodes of a healthy cluster (`FOUNDATION_EXPECTED_NODES`, default 1) */
  readonly expectedNodes?: number | undefined
  /** the host peers reach this node on (`FOUNDATION_HOST`; default `127.0.0.1`, the pod IP on Kubernetes) */
  readonly host?: string | undefined
  /** the host both endpoints bind (`FOUNDATION_LISTEN_HOST`; default `host`, `0.0.0.0` on Kubernetes) */
  readonly listenHost?: string | undefined
  /** the node endpoint's port (`FOUNDATION_PORT`, default 4370) */
  readonly port?: number | undefined
  /** the engine runner's port (`FOUNDATION_RUNNER_PORT`, default 4371) */
  readonly runnerPort?: number | undefined
  /** PostgreSQL URL (`FOUNDATION_DATABASE_URL`; `DATABASE_URL` if neither is set) */
  readonly databaseUrl?: string | undefined
  /** the SQLite file of the `local` strategy (`FOUNDATION_SQLITE_FILE`, default `.foundation/foundation.db`) */
  readonly sqliteFile?: string | undefined
  /** a prefix for every table (`FOUNDATION_TABLE_PREFIX`) */
  readonly tablePrefix?: string | undefined
  /** `foundation` (default) or `engine` (`FOUNDATION_FAILURE_DETECTION`) */
  readonly failureDetection?: Foundation.FailureDetection | undefined
  /**
   * overrides of `Foundation.shardingDefaults` (`FOUNDATION_SHARDS_PER_GROUP` and
   * `FOUNDATION_RUNNER_SHARD_WEIGHT` override theirs)
   */
  readonly sharding?: Partial<ShardingConfig.ShardingConfig["Type"]> | undefined
  /** the k8s runner health's query (`FOUNDATION_K8S_SELECTOR`, `FOUNDATION_K8S_NAMESPACE`) */
  readonly kubernetes?:
    | { readonly labelSelector?: string | undefined; readonly namespace?: string | undefined }
    | undefined
  /** Wizard mode: your own node layer, used unchanged (for example `Foundation.layerNode(options, parts)`) */
  readonly layer?: Layer.Layer<Foundation.NodeServices, E> | undefined
  /**
   * Wizard mode: your own `ShardingConfig`, used unchanged: `ShardingConfig.defaults` fill the fields
   * you leave out, not Foundation's tuned ones; its `runnerAddress`, if set, fixes host and runner port
   */
  readonly shardingConfig?: Partial<ShardingConfig.ShardingConfig["Type"]> | undefined
}

// -----------------------------------------------------------------------------
// Errors
// -----------------------------------------------------------------------------

/**
 * `cluster` (or `FOUNDATION_CLUSTER`) names no strategy this engine knows. `accepted` lists what it
 * can be. Unlike the seed, there is no silent fallback to auto-detection: write `true` for that.
 */
export class UnknownStrategy extends Schema.TaggedError<UnknownStrategy>()("UnknownStrategy", {
  variable: Schema.String,
  value: Schema.String,
  accepted: Schema.Array(Schema.String)
}) {
  get message(): string {
    return (
      `Unknown cluster strategy "${this.value}" in ${this.variable}. ` +
      `Accepted: ${this.accepted.join(", ")} (true auto-detects)`
    )
  }
}

/** A value (an environment variable, or a field of `Settings`) is not of the form `expected`. */
export class InvalidSetting extends Schema.TaggedError<InvalidSetting>()("InvalidSetting", {
  variable: Schema.String,
  value: Schema.String,
  expected: Schema.String
}) {
  get message(): string {
    return `${this.variable}=${JSON.stringify(this.value)} is not valid: expected ${this.expected}`
  }
}

/** The strategy needs a value nobody gave: set one of `variables`. */
export class MissingSetting extends Schema.TaggedError<MissingSetting>()("MissingSetting", {
  strategy: Schema.String,
  setting: Schema.String,
  variables: Schema.Array(Schema.String),
  hint: Schema.String
}) {
  get message(): string {
    return (
      `The ${this.strategy} strategy needs ${this.setting}: set ${this.variables.join(" or ")}. ` + this.hint
    )
  }
}

/** What `resolve` can fail with. */
export type ClusterConfigError = UnknownStrategy | InvalidSetting | MissingSetting

// -----------------------------------------------------------------------------
// Environment
// -----------------------------------------------------------------------------

/** One environment variable: its name, the form it expects, and its validated `effect/Config`. */
export interface Variable<A> {
  readonly name: string
  readonly expected: string
  readonly valid: (value: A) => boolean
  readonly config: Config.Config<A>
}

const variable = <A>(
  name: string,
  config: (name: string) => Config.Config<A>,
  expected: string,
  valid: (value: A) => boolean = () => true
): Variable<A> => ({
  name,
  expected,
  valid,
  config: config(name).pipe(Config.validate({ message: `Expected ${expected}`, validation: valid }))
})

const hostPattern = /^[A-Za-z0-9._:%[\]-]+$/
const ipv4Pattern = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/
const ipv6Pattern = /^[0-9A-Fa-f:.]+$/
const isIp = (value: string) => ipv4Pattern.test(value) || (value.includes(":") && ipv6Pattern.test(value))
const labelValuePattern = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/
const selectorPattern = /^[A-Za-z0-9._/=!,() -]+$/
const namespacePattern = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
const tablePrefixPattern = /^[A-Za-z_][A-Za-z0-9_]{0,40}$/
const postgresUrlPattern = /^postgres(ql)?:\/\/\S+$/
const positive = (n: number) => Number.isInteger(n) && n > 0
const isPort = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535

const postgresUrl = "a PostgreSQL URL, postgres://user:password@host:5432/database"
const ip = "an IPv4 or IPv6 address (the pod IP: env valueFrom fieldRef status.podIP)"
const hostForm = "a host name or IP address, e.g. 10.0.0.5"

/**
 * The variables `resolve` reads, each an `effect/Config` validated with the form it expects
 * (`FOUNDATION_*` share their names and forms with `FoundationNode.env`).
 */
export const env = {
  cluster: variable("FOUNDATION_CLUSTER", Config.string, `one of ${acceptedClusterValues.join(", ")}`),
  appName: variable(
    "FOUNDATION_APP_NAME",
    Config.string,
    "a Kubernetes label value: up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    (name) => labelValuePattern.test(name)
  ),
  nodeId: variable("FOUNDATION_NODE_ID", Config.string, "a non-empty node id", (id) => id.trim().length > 0),
  expectedNodes: variable(
    "FOUNDATION_EXPECTED_NODES",
    Config.integer,
    "a positive integer, the number of nodes of a healthy cluster",
    positive
  ),
  host: variable("FOUNDATION_HOST", Config.string, hostForm, (host) => hostPattern.test(host)),
  listenHost: variable(
    "FOUNDATION_LISTEN_HOST",
    Config.string,
    "a local address to bind, e.g. 0.0.0.0",
    (host) => hostPattern.test(host)
  ),
  port: variable("FOUNDATION_PORT", Config.port, "a TCP port, 1 to 65535", isPort),
  runnerPort: variable("FOUNDATION_RUNNER_PORT", Config.port, "a TCP port, 1 to 65535", isPort),
  podIp: variable("FOUNDATION_POD_IP", Config.string, ip, isIp),
  platformPodIp: variable("POD_IP", Config.string, ip, isIp),
  podName: variable("HOSTNAME", Config.string, "a pod name", (name) => name.trim().length > 0),
  databaseUrl: variable("FOUNDATION_DATABASE_URL", Config.string, postgresUrl, (url) =>
    postgresUrlPattern.test(url)
  ),
  platformDatabaseUrl: variable("DATABASE_URL", Config.string, postgresUrl, (url) =>
    postgresUrlPattern.test(url)
  ),
  sqliteFile: variable(
    "FOUNDATION_SQLITE_FILE",
    Config.string,
    "a file path, or :memory:",
    (file) => file.trim().length > 0
  ),
  tablePrefix: variable(
    "FOUNDATION_TABLE_PREFIX",
    Config.string,
    "up to 41 letters, digits and underscores, starting with a letter or underscore",
    (prefix) => tablePrefixPattern.test(prefix)
  ),
  failureDetection: variable(
    "FOUNDATION_FAILURE_DETECTION",
    Config.literal("foundation", "engine"),
    "foundation or engine"
  ),
  shardsPerGroup: variable(
    "FOUNDATION_SHARDS_PER_GROUP",
    Config.integer,
    "a positive integer, the same on every node",
    positive
  ),
  runnerShardWeight: variable(
    "FOUNDATION_RUNNER_SHARD_WEIGHT",
    Config.integer,
    "a positive integer (2 takes twice the shards of 1)",
    positive
  ),
  k8sSelector: variable(
    "FOUNDATION_K8S_SELECTOR",
    Config.string,
    "a Kubernetes label selector, e.g. app=shop,tier=backend",
    (selector) => selector.trim().length > 0 && selectorPattern.test(selector)
  ),
  k8sNamespace: variable(
    "FOUNDATION_K8S_NAMESPACE",
    Config.string,
    "a Kubernetes namespace: lowercase letters, digits and '-'",
    (namespace) => namespacePattern.test(namespace)
  ),
  kubernetesServiceHost: variable("KUBERNETES_SERVICE_HOST", Config.string, "a host")
}

/** Reads one variable: `None` when unset, `InvalidSetting` (with the raw value) when malformed. */
const read = <A>(v: Variable<A>): Effect.Effect<Option.Option<A>, InvalidSetting> =>
  Effect.gen(function* () {
    const raw = yield* Effect.orElseSucceed(Config.option(Config.string(v.name)), () => Option.none<string>())
    if (Option.isNone(raw)) return Option.none()
    return yield* Effect.mapBoth(v.config, {
      onFailure: () => new InvalidSetting({ variable: v.name, value: raw.value, expected: v.expected }),
      onSuccess: Option.some
    })
  })

/** Checks a value given in `Settings` against the form its variable expects. */
const checked = <A>(
  v: Variable<A>,
  field: string,
  value: A | undefined
): Effect.Effect<Option.Option<A>, InvalidSetting> =>
  value === undefined
    ? Effect.succeed(Option.none())
    : v.valid(value)
      ? Effect.succeed(Option.some(value))
      : Effect.fail(
          new InvalidSetting({ variable: `settings.${field}`, value: String(value), expected: v.expected })
        )

// -----------------------------------------------------------------------------
// Resolution
// -----------------------------------------------------------------------------

type Candidate<A> = Effect.Effect<Option.Option<readonly [A, Source]>, ClusterConfigError>

const fromEnv = <A>(v: Variable<A>): Candidate<A> =>
  Effect.map(
    read(v),
    Option.map((value) => [value, { _tag: "Env", variable: v.name }] as const)
  )

const fromSettings = <A>(v: Variable<A>, field: string, value: A | undefined): Candidate<A> =>
  Effect.map(
    checked(v, field, value),
    Option.map((value) => [value, { _tag: "Settings", field: `settings.${field}` }] as const)
  )

const fromRule = <A>(value: A, rule: string): Candidate<A> =>
  Effect.succeed(Option.some([value, { _tag: "Rule", rule }] as const))

/** The first candidate that has a value (each is read only if the ones before it are empty). */
const firstOf = <A>(...candidates: ReadonlyArray<Candidate<A>>): Candidate<A> =>
  candidates.reduce(
    (acc, next) => Effect.flatMap(acc, (found) => (Option.isSome(found) ? Effect.succeed(found) : next)),
    Effect.succeed(Option.none()) as Candidate<A>
  )

/** The usual precedence: the `FOUNDATION_*` variable `v`, then the `Settings` field, then `fallback`. */
const overridable = <A, B = never>(
  v: Variable<A>,
  field: string,
  value: A | undefined,
  fallback: Candidate<B>
): Candidate<A | B> => firstOf<A | B>(fromEnv(v), fromSettings(v, field, value), fallback)

const redactUrl = (url: string) => url.replace(/^(\w+:\/\/[^:/@]+):[^@/]*@/, "$1:***@")

const renderValue = (value: unknown): string =>
  Duration.isDuration(value)
    ? Duration.format(value)
    : Option.isOption(value)
      ? Option.match(value, { onNone: () => "none", onSome: renderValue })
      : Array.isArray(value)
        ? `[${value.map(renderValue).join(", ")}]`
        : String(value)

const renderStorage = (storage: Storage) =>
  storage._tag === "postgres" ? `postgres ${redactUrl(storage.url)}` : `sqlite ${storage.filename}`

const renderHealth = (health: RunnerHealth) =>
  health._tag === "FailureDetector"
    ? "Foundation's failure detector"
    : health._tag === "Ping"
      ? "the engine's ping"
      : `the Kubernetes API: pods matching ${health.labelSelector}`

const renderPort = (port: number) => (port === 0 ? "chosen at start" : String(port))

/** The values chosen so far, in order. */
class Choices {
  readonly list: Array<Choice> = []
  add<A>(setting: string, [value, source]: readonly [A, Source], render: (a: A) => string = renderValue): A {
    this.list.push({ setting, value: render(value), source })
    return value
  }
}

/**
 * Takes the first candidate with a value and records it; fails with `missing` when none has one (the
 * candidates end with a rule unless `missing` is given).
 */
const choose = <A>(
  choices: Choices,
  setting: string,
  candidate: Candidate<A>,
  options?: { readonly render?: (a: A) => string; readonly missing?: () => ClusterConfigError }
): Effect.Effect<A, ClusterConfigError> =>
  Effect.flatMap(candidate, (found) =>
    Option.isSome(found)
      ? Effect.succeed(choices.add(setting, found.value, options?.render))
      : options?.missing
        ? Effect.fail(options.missing())
        : Effect.dieMessage(`ClusterConfig: no rule for ${setting}`)
  )

const parseCluster = (
  raw: boolean | string,
  variableName: string
): Effect.Effect<boolean | Strategy, UnknownStrategy> => {
  if (typeof raw === "boolean") return Effect.succeed(raw)
  if (raw === "true") return Effect.succeed(true)
  if (raw === "false") return Effect.succeed(false)
  if ((strategies as ReadonlyArray<string>).includes(raw)) return Effect.succeed(raw as Strategy)
  return Effect.fail(
    new UnknownStrategy({ variable: variableName, value: raw, accepted: acceptedClusterValues })
  )
}

/** `FOUNDATION_DATABASE_URL`, then `settings.databaseUrl`, then `DATABASE_URL`. */
const databaseUrl = (settings: Settings<unknown>): Candidate<string> =>
  overridable(env.databaseUrl, "databaseUrl", settings.databaseUrl, fromEnv(env.platformDatabaseUrl))

/** Auto-detection (`cluster: true`): kubernetes, then a database URL, then local. */
const detect = (
  settings: Settings<unknown>
): Effect.Effect<{ readonly strategy: Strategy; readonly rule: string }, ClusterConfigError> =>
  Effect.gen(function* () {
    const k8s = yield* read(env.kubernetesServiceHost)
    if (Option.isSome(k8s) && k8s.value.trim().length > 0) {
      return { strategy: "kubernetes", rule: "KUBERNETES_SERVICE_HOST is set: running in a Kubernetes pod" }
    }
    const url = yield* databaseUrl(settings)
    if (Option.isSome(url)) {
      return { strategy: "postgres", rule: `a database URL is set (${renderSource(url.value[1])})` }
    }
    return { strategy: "local", rule: "no KUBERNETES_SERVICE_HOST and no database URL" }
  })

/** The host and runner port fixed by the `runnerAddress` of your `ShardingConfig` (Wizard mode). */
interface Pinned {
  readonly host: string
  readonly runnerPort: number
}

/** A value fixed by the `runnerAddress` of your `ShardingConfig`. */
const pinnedTo = <A>(value: A): Candidate<A> =>
  Effect.succeed(
    Option.some([value, { _tag: "Settings", field: "settings.shardingConfig.runnerAddress" }] as const)
  )

const nothing = <A>(): Candidate<A> => Effect.succeed(Option.none())

/** Addresses, identity, storage and health of a strategy (the sharding fields are added after). */
const translate = (
  settings: Settings<unknown>,
  strategy: Strategy | "none",
  appName: string,
  choices: Choices,
  pinned: Pinned | undefined
): Effect.Effect<Omit<Translation, "sharding">, ClusterConfigError> =>
  Effect.gen(function* () {
    const k8s = strategy === "kubernetes"
    const none = strategy === "none"
    const host = yield* choose(
      choices,
      "host",
      pinned
        ? pinnedTo(pinned.host)
        : overridable(
            env.host,
            "host",
            settings.host,
            k8s
              ? firstOf(fromEnv(env.podIp), fromEnv(env.platformPodIp))
              : fromRule("127.0.0.1", none ? "no clustering: loopback only" : "the default")
          ),
      {
        missing: () =>
          new MissingSetting({
            strategy,
            setting: "the address peers reach this pod on",
            variables: ["FOUNDATION_POD_IP", "POD_IP", "FOUNDATION_HOST", "settings.host"],
            hint:
              "In the pod spec: env: [{ name: FOUNDATION_POD_IP, valueFrom: { fieldRef: { fieldPath: " +
              "status.podIP } } }]"
          })
      }
    )
    const listenHost = yield* choose(
      choices,
      "listenHost",
      overridable(
        env.listenHost,
        "listenHost",
        settings.listenHost,
        k8s
          ? fromRule("0.0.0.0", "kubernetes: a pod binds every interface")
          : fromRule(host, "the same as host")
      )
    )
    /** A port: `FOUNDATION_*`, the setting, then the default, or a free one without clustering. */
    const portOf = (field: "port" | "runnerPort", defaultPort: number, pin: number | undefined) =>
      choose(
        choices,
        field,
        pin !== undefined
          ? pinnedTo(pin)
          : overridable(
              env[field],
              field,
              settings[field],
              none
                ? fromRule(0, "no clustering: a free loopback port, chosen at start")
                : fromRule(defaultPort, "the default")
            ),
        { render: renderPort }
      )
    const port = yield* portOf("port", 4370, undefined)
    const runnerPort = yield* portOf("runnerPort", 4371, pinned?.runnerPort)
    const nodeId = yield* choose(
      choices,
      "nodeId",
      firstOf(
        Effect.map(
          fromEnv(env.nodeId),
          Option.map(([id, source]) => [id.trim(), source] as const)
        ),
        fromSettings(env.nodeId, "nodeId", settings.nodeId?.trim()),
        k8s ? fromEnv(env.podName) : nothing(),
        none
          ? fromRule(appName, "no clustering: the app name")
          : fromRule(`${appName}@${host}:${port}`, "<app name>@<host>:<port>")
      )
    )
    const asStorage = (candidate: Candidate<string>, make: (value: string) => Storage): Candidate<Storage> =>
      Effect.map(
        candidate,
        Option.map(([value, source]) => [make(value), source] as const)
      )
    const storage = yield* choose(
      choices,
      "storage",
      none
        ? fromRule<Storage>({ _tag: "sqlite", filename: ":memory:" }, "no clustering: in memory")
        : strategy === "local"
          ? asStorage(
              overridable(
                env.sqliteFile,
                "sqliteFile",
                settings.sqliteFile,
                fromRule(".foundation/foundation.db", "local: the embedded default, one process")
              ),
              (filename) => ({ _tag: "sqlite", filename })
            )
          : asStorage(databaseUrl(settings), (url) => ({ _tag: "postgres", url })),
      {
        render: renderStorage,
        missing: () =>
          new MissingSetting({
            strategy,
            setting: "a PostgreSQL database shared by every node (membership comes from the runner storage)",
            variables: ["FOUNDATION_DATABASE_URL", "settings.databaseUrl", "DATABASE_URL"],
            hint: `Expected ${postgresUrl}.`
          })
      }
    )
    const tablePrefix = yield* choose(
      choices,
      "tablePrefix",
      overridable(
        env.tablePrefix,
        "tablePrefix",
        settings.tablePrefix,
        fromRule(undefined, "none: tables cluster_* and foundation_nodes")
      ),
      { render: (prefix) => prefix ?? "none" }
    )
    const failureDetection = yield* choose(
      choices,
      "failureDetection",
      overridable(
        env.failureDetection,
        "failureDetection",
        settings.failureDetection,
        fromRule<Foundation.FailureDetection>("foundation", "the default: Foundation's failure detector")
      )
    )
    let kubernetes: Kubernetes | undefined = undefined
    if (k8s) {
      const labelSelector = yield* choose(
        choices,
        "kubernetes.labelSelector",
        overridable(
          env.k8sSelector,
          "kubernetes.labelSelector",
          settings.kubernetes?.labelSelector,
          fromRule(`app=${appName}`, "app=<app name>")
        )
      )
      const namespace = yield* choose(
        choices,
        "kubernetes.namespace",
        overridable(
          env.k8sNamespace,
          "kubernetes.namespace",
          settings.kubernetes?.namespace,
          fromRule(undefined, "none: pods of every namespace (the service account must list them all)")
        ),
        { render: (ns) => ns ?? "all" }
      )
      kubernetes = { labelSelector, namespace }
    }
    const runnerHealth = choices.add<RunnerHealth>(
      "runnerHealth",
      failureDetection === "foundation"
        ? [{ _tag: "FailureDetector" }, { _tag: "Rule", rule: "failure detection foundation" }]
        : kubernetes
          ? [
              { _tag: "K8s", ...kubernetes },
              { _tag: "Rule", rule: "failure detection engine, on kubernetes" }
            ]
          : [{ _tag: "Ping" }, { _tag: "Rule", rule: "failure detection engine" }],
      renderHealth
    )
    const runnerTransport = choices.add<"foundation" | "engine">(
      "runnerTransport",
      failureDetection === "foundation"
        ? [
            "foundation",
            {
              _tag: "Rule",
              rule: "failure detection foundation: RunnerRpc, the runner hop on the fast node RPC"
            }
          ]
        : ["engine", { _tag: "Rule", rule: "failure detection engine: the engine's RunnerServer" }]
    )
    return {
      strategy,
      nodeId,
      host,
      listenHost,
      port,
      runnerPort,
      storage,
      tablePrefix,
      failureDetection,
      runnerHealth,
      runnerTransport,
      kubernetes
    }
  })

type ShardingFields = Partial<ShardingConfig.ShardingConfig["Type"]>

/** The node's own address fields, which the platform sets from `host` and `runnerPort`. */
const addressFields = new Set(["runnerAddress", "runnerListenAddress"])

/** Foundation's tuned timings, your overrides, then the `FOUNDATION_*` shard variables. */
const tunedSharding = (
  settings: Settings<unknown>,
  choices: Choices
): Effect.Effect<ShardingFields, ClusterConfigError> =>
  Effect.gen(function* () {
    const engineDefaults = ShardingConfig.defaults as Record<string, unknown>
    const sharding = new Map<string, readonly [unknown, Source]>()
    for (const [key, value] of Object.entries(Foundation.shardingDefaults)) {
      const rule = `Foundation.shardingDefaults (the engine's default: ${renderValue(engineDefaults[key])})`
      sharding.set(key, [value, { _tag: "Rule", rule }])
    }
    for (const [key, value] of Object.entries(settings.sharding ?? {})) {
      if (value !== undefined && !addressFields.has(key)) {
        sharding.set(key, [value, { _tag: "Settings", field: `settings.sharding.${key}` }])
      }
    }
    for (const [key, v] of [
      ["shardsPerGroup", env.shardsPerGroup],
      ["runnerShardWeight", env.runnerShardWeight]
    ] as const) {
      const found = yield* read(v)
      if (Option.isSome(found)) sharding.set(key, [found.value, { _tag: "Env", variable: v.name }])
    }
    if (!sharding.has("shardsPerGroup")) {
      choices.add("sharding.shardsPerGroup", [
        ShardingConfig.defaults.shardsPerGroup,
        { _tag: "Rule", rule: "the engine's default (ShardingConfig.defaults); the same on every node" }
      ])
    }
    for (const [key, found] of sharding) choices.add(`sharding.${key}`, found)
    return Object.fromEntries([...sharding].map(([key, [value]]) => [key, value])) as ShardingFields
  })

/** Your `ShardingConfig`, unchanged, over the engine's defaults (Wizard mode). */
const wizardSharding = (
  config: ShardingFields
): {
  readonly sharding: ShardingFields
  readonly pinned: Pinned | undefined
  readonly choices: ReadonlyArray<Choice>
} => {
  const choices = new Choices()
  const { runnerAddress, ...rest } = config
  for (const [key, value] of Object.entries(rest)) {
    if (value !== undefined) {
      choices.add(`sharding.${key}`, [value, { _tag: "Settings", field: `settings.shardingConfig.${key}` }])
    }
  }
  choices.add("sharding (every other field)", [
    "ShardingConfig.defaults",
    { _tag: "Rule", rule: "Wizard: the engine's defaults, not Foundation's tuned ones" }
  ])
  const address = runnerAddress === undefined ? undefined : Option.getOrUndefined(runnerAddress)
  return {
    sharding: { ...ShardingConfig.defaults, ...rest },
    pinned: address === undefined ? undefined : { host: address.host, runnerPort: address.port },
    choices: choices.list
  }
}

/**
 * Resolves `settings` (and the environment, through the current `ConfigProvider`) into one of the
 * four modes, with the full translation and the source of every value (see the module doc for the
 * rules). Logs `explainText` at debug level; print it yourself to show it at start.
 *
 * Raw equivalent of what it decides: the `options` and `parts` of `Foundation.layerNode`, with
 * `ShardingConfig.layer({ ...Foundation.shardingDefaults, ...overrides, runnerAddress })`.
 */
export const resolve = <E = never>(
  settings: Settings<E> = {}
): Effect.Effect<Resolved<E>, ClusterConfigError> =>
  Effect.gen(function* () {
    if (settings.layer !== undefined && settings.shardingConfig !== undefined) {
      return yield* new InvalidSetting({
        variable: "settings.shardingConfig",
        value: "given together with settings.layer",
        expected:
          "settings.layer or settings.shardingConfig, not both (your layer carries its own ShardingConfig)"
      })
    }
    const head = new Choices()
    const choices = new Choices()
    const appName = yield* choose(
      choices,
      "appName",
      overridable(env.appName, "appName", settings.appName, fromRule("foundation", "the default"))
    )
    const expectedNodes = yield* choose(
      choices,
      "expectedNodes",
      overridable(env.expectedNodes, "expectedNodes", settings.expectedNodes, fromRule(1, "the default"))
    )

    if (settings.layer !== undefined) {
      head.add("mode", [
        "Wizard",
        { _tag: "Settings", field: "settings.layer (your node layer, used unchanged)" }
      ])
      const resolved = Resolved.Wizard({
        appName,
        expectedNodes,
        choices: [...head.list, ...choices.list],
        layer: settings.layer,
        translation: undefined
      }) as Resolved<E>
      yield* Effect.logDebug(explainText(resolved))
      return resolved
    }

    const fromEnvCluster = yield* read(env.cluster)
    const [setting, clusterSource] = yield* Option.isSome(fromEnvCluster)
      ? Effect.map(
          parseCluster(fromEnvCluster.value, env.cluster.name),
          (value) => [value, { _tag: "Env", variable: env.cluster.name } as Source] as const
        )
      : settings.cluster === undefined
        ? Effect.succeed([false, { _tag: "Rule", rule: "the default: no clustering" } as Source] as const)
        : Effect.map(
            parseCluster(settings.cluster, "settings.cluster"),
            (value) => [value, { _tag: "Settings", field: "settings.cluster" } as Source] as const
          )
    const detected = setting === true ? yield* detect(settings) : undefined
    const strategy: Strategy | "none" =
      setting === false ? "none" : setting === true ? detected!.strategy : setting
    const custom = settings.shardingConfig === undefined ? undefined : wizardSharding(settings.shardingConfig)
    const mode: Resolved["_tag"] = custom
      ? "Wizard"
      : setting === false
        ? "NoClustering"
        : setting === true
          ? "Mortal"
          : "Apprentice"

    head.add("mode", [
      mode,
      custom
        ? { _tag: "Settings", field: "settings.shardingConfig (your ShardingConfig, used unchanged)" }
        : clusterSource
    ])
    head.add("cluster", [setting, clusterSource])
    head.add("strategy", [
      strategy,
      detected ? { _tag: "Rule", rule: `auto-detected: ${detected.rule}` } : clusterSource
    ])

    const base = yield* translate(settings, strategy, appName, choices, custom?.pinned)
    let sharding: ShardingFields
    if (custom) {
      choices.list.push(...custom.choices)
      sharding = custom.sharding
    } else {
      sharding = yield* tunedSharding(settings, choices)
    }
    choices.add("sharding.runnerAddress", [
      `${base.host}:${renderPort(base.runnerPort)}`,
      { _tag: "Rule", rule: "host and runnerPort" }
    ])
    const translation: Translation = { ...base, sharding }
    const common = { appName, expectedNodes, choices: [...head.list, ...choices.list] }
    const resolved: Resolved<E> =
      mode === "Wizard"
        ? Resolved.Wizard({ ...common, layer: undefined, translation })
        : mode === "NoClustering"
          ? Resolved.NoClustering({ ...common, translation })
          : mode === "Mortal"
            ? Resolved.Mortal({ ...common, detected: detected!.strategy, rule: detected!.rule, translation })
            : Resolved.Apprentice({ ...common, strategy: strategy as Strategy, translation })
    yield* Effect.logDebug(explainText(resolved))
    return resolved
  })

// -----------------------------------------------------------------------------
// The resolved configuration as a service
// -----------------------------------------------------------------------------

/**
 * The resolved configuration of this node, as a service: what `Health` reads (expected nodes, app
 * name) and what a demo prints.
 */
export class ClusterConfig extends Context.Tag("@foundation/core/ClusterConfig")<
  ClusterConfig,
  Resolved<unknown>
>() {}

/** `resolve(settings)` as a layer: `Layer.effect(ClusterConfig, resolve(settings))`. */
export const layer = <E = never>(
  settings: Settings<E> = {}
): Layer.Layer<ClusterConfig, ClusterConfigError> => Layer.effect(ClusterConfig, resolve(settings))

/** An already resolved configuration as a layer: `Layer.succeed(ClusterConfig, resolved)`. */
export const layerResolved = <E>(resolved: Resolved<E>): Layer.Layer<ClusterConfig> =>
  Layer.succeed(ClusterConfig, resolved)

// -----------------------------------------------------------------------------
// Explanation
// -----------------------------------------------------------------------------

/** One part of the node and the raw calls that build it. */
export interface RawLayer {
  readonly part: "sharding" | "transport" | "storage" | "health" | "node"
  readonly raw: string
}

/** The translation as data: the mode, each chosen value with its source, and the raw layers. */
export interface Explanation {
  readonly mode: Resolved["_tag"]
  readonly strategy: Strategy | "none" | undefined
  readonly summary: string
  readonly choices: ReadonlyArray<Choice>
  readonly layers: ReadonlyArray<RawLayer>
}

/** A source as text: `env FOUNDATION_PORT`, `settings.port`, or the rule. */
export const renderSource = (source: Source): string =>
  source._tag === "Env" ? `env ${source.variable}` : source._tag === "Settings" ? source.field : source.rule

const shardingText = (translation: Translation, wizard: boolean): string => {
  const defaults = Foundation.shardingDefaults as Record<string, unknown>
  const overrides = Object.entries(translation.sharding).filter(
    ([key, value]) =>
      key !== "runnerAddress" &&
      (wizard ? value !== (ShardingConfig.defaults as Record<string, unknown>)[key] : value !== defaults[key])
  )
  const fields = [
    wizard ? "...ShardingConfig.defaults" : "...Foundation.shardingDefaults",
    ...overrides.map(([key, value]) => `${key}: ${renderValue(value)}`),
    `runnerAddress: Option.some(RunnerAddress.make(${JSON.stringify(translation.host)}, ${
      translation.runnerPort === 0 ? "<free port>" : translation.runnerPort
    }))`
  ]
  return `ShardingConfig.layer({ ${fields.join(", ")} })`
}

const layersOf = (translation: Translation, wizard: boolean): ReadonlyArray<RawLayer> => {
  const port = (p: number) => (p === 0 ? "<free port>" : String(p))
  const prefix = translation.tablePrefix === undefined ? "" : `${translation.tablePrefix}_`
  const storage = translation.storage
  const client =
    storage._tag === "postgres"
      ? `PgClient.layer({ url: ${JSON.stringify(redactUrl(storage.url))} })`
      : `SqliteClient.layer({ filename: ${JSON.stringify(storage.filename)} })`
  const health = translation.runnerHealth
  return [
    {
      part: "node",
      raw: `Foundation.layerNode({ id: ${JSON.stringify(translation.nodeId)}, failureDetection: "${translation.failureDetection}", runnerTransport: "${translation.runnerTransport}" }, parts)`
    },
    { part: "sharding", raw: shardingText(translation, wizard) },
    {
      part: "transport",
      raw:
        `node endpoint: RpcServer.Protocol over TCP on ${translation.listenHost}:${port(translation.port)} ` +
        `(peers dial ${translation.host}:${port(translation.port)}); runner endpoint on ` +
        `${translation.listenHost}:${port(translation.runnerPort)}; msgpack`
    },
    {
      part: "storage",
      raw:
        `${client} -> SqlRunnerStorage.layerWith({ prefix: "${prefix}cluster" }), ` +
        `SqlMessageStorage.layerWith({ prefix: "${prefix}cluster" }), NodeDirectory.layerSql({ prefix: "${prefix}foundation" })`
    },
    {
      part: "health",
      raw:
        health._tag === "FailureDetector"
          ? "FailureDetector.layerRunnerHealth (RunnerHealth) + FailureDetector.layerFailover"
          : health._tag === "Ping"
            ? "RunnerHealth.layerPing"
            : `RunnerHealth.layerK8s({ labelSelector: ${JSON.stringify(health.labelSelector)}${
                health.namespace === undefined ? "" : `, namespace: ${JSON.stringify(health.namespace)}`
              } }) with K8sHttpClient (NodeClusterSocket.layerK8sHttpClient)`
    }
  ]
}

const summaryOf = <E>(resolved: Resolved<E>): string => {
  switch (resolved._tag) {
    case "NoClustering":
      return "NoClustering: one node, in memory"
    case "Mortal":
      return `Mortal: auto-detected ${resolved.detected} (${resolved.rule})`
    case "Apprentice":
      return `Apprentice: strategy ${resolved.strategy}`
    case "Wizard":
      return resolved.layer !== undefined
        ? "Wizard: your node layer, used unchanged"
        : `Wizard: your ShardingConfig, used unchanged (strategy ${resolved.translation?.strategy})`
  }
}

/**
 * The translation as data: each chosen value and the env var, setting or rule it came from, and the
 * raw layers it stands for (what `NodeClusterConfig.layer` builds).
 */
export const explain = <E>(resolved: Resolved<E>): Explanation => {
  const translation = resolved.translation
  return {
    mode: resolved._tag,
    strategy: translation?.strategy,
    summary: summaryOf(resolved),
    choices: resolved.choices,
    layers:
      translation === undefined
        ? [{ part: "node", raw: "settings.layer, unchanged" }]
        : layersOf(translation, resolved._tag === "Wizard")
  }
}

const table = (rows: ReadonlyArray<ReadonlyArray<string>>): ReadonlyArray<string> => {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)))
  const line = (row: ReadonlyArray<string>) =>
    `  ${row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]))).join("  ")}`
  return [line(rows[0]), line(widths.map((width) => "-".repeat(width))), ...rows.slice(1).map(line)]
}

/** `explain` as text a person can read: a summary, a table of values and sources, the raw layers. */
export const explainText = <E>(resolved: Resolved<E>): string => {
  const explanation = explain(resolved)
  return [
    `Cluster configuration: ${explanation.summary}`,
    "",
    ...table([
      ["setting", "value", "from"],
      ...explanation.choices.map((choice) => [choice.setting, choice.value, renderSource(choice.source)])
    ]),
    "",
    "Layers (the raw equivalent)",
    ...table([["part", "raw calls"], ...explanation.layers.map((layer) => [layer.part, layer.raw])])
  ].join("\n")
}
