/**
 * Composes one Foundation node: an `@effect/cluster` runner, Foundation's node endpoint, and the
 * failure detector wired into the engine.
 *
 * What `layerNode` builds, in raw calls:
 * ```ts
 * RunnerRpc.layerWithClients                            // Sharding + Runners, runner hop on the fast node RPC
 *   // (RunnerServer.layerWithClients, the engine's own runner RPC, with runnerTransport "engine")
 *   .pipe(Layer.provide(FailureDetector.layerRunnerHealth)) // RunnerHealth answered by the detector
 * FailureDetector.layerFailover                         // NodeDown -> setRunnerHealth(false) + releaseAll
 * Node.layer({ id, address, runnerAddress })            // membership + NodeRpcs endpoint
 * ShardingConfig.layer({ ...Foundation.shardingDefaults, runnerAddress })
 * Sharding.makeClient(entity.annotate(ClusterSchema.ClientTracingEnabled, false)) // unless the entity
 *                                                       // sets it, or entityClientTracing is true
 * EntityHost.layer                                      // entityHost "foundation" (default): Sharding's
 *   // registerEntity / makeClient go to the host; RunnerStorage.release / releaseAll stop the shard's
 *   // entities first; getRunners changes reset the host's routes (see EntityHost)
 * ```
 * The platform package supplies the parts: the runner and node server protocols, the runner client
 * protocol, the node transport, the directory and the two storages. Swap any part for your own, or
 * skip this module and compose the raw layers yourself.
 */
import * as ClusterSchema from "@effect/cluster/ClusterSchema"
import * as Entity from "@effect/cluster/Entity"
import type * as MessageStorage from "@effect/cluster/MessageStorage"
import { RunnerAddress } from "@effect/cluster/RunnerAddress"
import * as RunnerHealth from "@effect/cluster/RunnerHealth"
import type * as Runners from "@effect/cluster/Runners"
import * as RunnerServer from "@effect/cluster/RunnerServer"
import type { Runner } from "@effect/cluster/Runner"
import * as RunnerStorage from "@effect/cluster/RunnerStorage"
import * as Sharding from "@effect/cluster/Sharding"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import type * as Rpc from "@effect/rpc/Rpc"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import type * as RpcServer from "@effect/rpc/RpcServer"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Equal from "effect/Equal"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as EntityHost from "./EntityHost.js"
import * as FailureDetector from "./FailureDetector.js"
import * as Node from "./Node.js"
import * as RunnerRpc from "./RunnerRpc.js"
import type { NodeDirectory } from "./NodeDirectory.js"
import type { NodeDirectoryError } from "./NodeError.js"
import type { NodeTransport } from "./NodeTransport.js"

/**
 * The engine settings Foundation runs with, instead of the engine's 35 s lock expiry and 1 min
 * health check:
 * - `shardLockDisableAdvisory: true`: shard locks are lease rows (`cluster_locks`) on every dialect,
 *   so the detector can release a dead node's leases from any node (advisory locks belong to a
 *   Postgres session, which a frozen process keeps open forever);
 * - `refreshAssignmentsInterval` 250 ms: how fast every runner sees a node marked unhealthy;
 * - `shardLockRefreshInterval` 1 s and `shardLockExpiration` 10 s: the lease backstop, used only
 *   when the detector cannot act (for example, no node sees a majority);
 * - `runnerHealthCheckInterval` 1 s: the engine's health singleton, answered from the detector;
 * - `sendRetryInterval` 50 ms, `entityMessagePollInterval` 1 s, `entityTerminationTimeout` 3 s.
 */
export const shardingDefaults: Partial<ShardingConfig.ShardingConfig["Type"]> = {
  shardLockDisableAdvisory: true,
  refreshAssignmentsInterval: Duration.millis(250),
  shardLockRefreshInterval: Duration.seconds(1),
  shardLockExpiration: Duration.seconds(10),
  runnerHealthCheckInterval: Duration.seconds(1),
  sendRetryInterval: Duration.millis(50),
  entityMessagePollInterval: Duration.seconds(1),
  entityReplyPollInterval: Duration.millis(200),
  entityTerminationTimeout: Duration.seconds(3)
}

/**
 * How failures are detected:
 * - `foundation` (the default): Foundation's detector drives failover (see `FailureDetector`);
 * - `engine`: the engine alone, with its default settings and `RunnerHealth.layerPing`. This is the
 *   baseline the failover benchmark compares against; the node endpoint and membership still run.
 */
export type FailureDetection = "foundation" | "engine"

/** What identifies a node and how it is tuned. */
export interface NodeOptions {
  readonly id: Node.NodeId
  /** where this node's Foundation endpoint listens */
  readonly address: Node.NodeAddress
  /** where this node's engine runner listens */
  readonly runnerAddress: RunnerAddress
  /** overrides of `shardingDefaults` (or of the engine defaults in `engine` mode) */
  readonly sharding?: Partial<ShardingConfig.ShardingConfig["Type"]> | undefined
  readonly failureDetection?: FailureDetection | undefined
  /**
   * how runners call each other: `foundation` (`RunnerRpc`, the default) or `engine`
   * (`RunnerServer.layerWithClients`, the default in `engine` failure-detection mode)
   */
  readonly runnerTransport?: "foundation" | "engine" | undefined
  /**
   * open a span per entity call on the caller (the engine's `ClusterSchema.ClientTracingEnabled`).
   * Default `false`: an entity that sets the annotation itself keeps its own setting.
   */
  readonly entityClientTracing?: boolean | undefined
  /**
   * who runs entities and carries calls to them: `foundation` (`EntityHost`, the default with the
   * `foundation` runner transport) or `engine` (the engine's entity manager and entity client)
   */
  readonly entityHost?: "foundation" | "engine" | undefined
}

/** The platform-specific layers a node is made of. */
export interface NodeParts<E = never> {
  /** the node endpoint's server protocol (serves `NodeRpcs`) */
  readonly nodeServer: Layer.Layer<RpcServer.Protocol, E>
  /** the engine runner's server protocol */
  readonly runnerServer: Layer.Layer<RpcServer.Protocol, E>
  /** the engine's client protocol to other runners */
  readonly runnerClient: Layer.Layer<Runners.RpcClientProtocol, E>
  /** the engine's health check in `engine` mode (the engine default is `RunnerHealth.layerPing`) */
  readonly engineRunnerHealth?: Layer.Layer<RunnerHealth.RunnerHealth, E> | undefined
  readonly transport: Layer.Layer<NodeTransport, E>
  readonly directory: Layer.Layer<NodeDirectory, E | NodeDirectoryError>
  readonly runnerStorage: Layer.Layer<RunnerStorage.RunnerStorage, E>
  readonly messageStorage: Layer.Layer<MessageStorage.MessageStorage, E>
}

/** The services a running node provides to the application layers above it. */
export type NodeServices =
  | Sharding.Sharding
  | EntityHost.EntityHost
  | Runners.Runners
  | Node.Node
  | MessageStorage.MessageStorage
  | RunnerStorage.RunnerStorage
  | ShardingConfig.ShardingConfig

/** The `ShardingConfig` a node runs with, for a given mode. */
export const shardingConfigFor = (options: NodeOptions): Partial<ShardingConfig.ShardingConfig["Type"]> => ({
  ...(options.failureDetection === "engine" ? {} : shardingDefaults),
  ...options.sharding,
  runnerAddress: Option.some(options.runnerAddress)
})

/**
 * One node: the engine runner, the node endpoint and, in `foundation` mode, the failure detector
 * driving failover. Application layers (entities, singletons) are provided on top of it.
 */
export const layerNode = <E>(
  options: NodeOptions,
  parts: NodeParts<E>
): Layer.Layer<NodeServices, E | NodeDirectoryError> => {
  const engineMode = options.failureDetection === "engine"
  const node = Node.layer({
    id: options.id,
    address: options.address,
    runnerAddress: options.runnerAddress
  }).pipe(Layer.provide([parts.nodeServer, parts.transport, parts.directory]))
  const runnerHealth: Layer.Layer<RunnerHealth.RunnerHealth, E, Node.Node> = engineMode
    ? (parts.engineRunnerHealth ?? RunnerHealth.layerNoop)
    : FailureDetector.layerRunnerHealth
  const runnerTransport = options.runnerTransport ?? (engineMode ? "engine" : "foundation")
  const hosted = runnerTransport === "foundation" && options.entityHost !== "engine"
  const runner = runnerTransport === "engine" ? RunnerServer.layerWithClients : RunnerRpc.layerWithClients
  const traced = options.entityClientTracing === true ? runner : withoutClientTracing(runner)
  const engine = (hosted ? withEntityHost(traced, options.entityClientTracing === true) : traced).pipe(
    Layer.provide(runnerHealth),
    Layer.provide([parts.runnerServer, parts.runnerClient])
  )
  const runtime = engineMode ? engine : Layer.merge(engine, FailureDetector.layerFailover)
  const storage = Layer.merge(parts.runnerStorage, parts.messageStorage)
  return runtime.pipe(
    Layer.provideMerge(node),
    Layer.provideMerge(hosted ? Layer.provideMerge(storageForHost, storage) : storage),
    Layer.provideMerge(EntityHost.layer),
    Layer.provideMerge(ShardingConfig.layer(shardingConfigFor(options)))
  )
}

/** How often the host stops idle entities and those whose shard this node no longer owns. */
const hostSweepInterval = Duration.millis(500)

/**
 * Installs the `EntityHost` on a runner: its `Sharding` registers the entities the host can run
 * with the host (and forwarding handlers with the engine), and makes clients that call the host.
 */
const withEntityHost = <E, R>(
  runner: Layer.Layer<Sharding.Sharding | Runners.Runners, E, R>,
  clientTracing: boolean
): Layer.Layer<
  Sharding.Sharding | Runners.Runners,
  E,
  R | EntityHost.EntityHost | ShardingConfig.ShardingConfig
> =>
  Layer.flatMap(runner, (context) =>
    Layer.scopedContext(
      Effect.gen(function* () {
        const sharding = Context.get(context, Sharding.Sharding)
        const host = yield* EntityHost.EntityHost
        host.bind(sharding, yield* ShardingConfig.ShardingConfig, yield* Effect.runtime<never>())
        yield* host.sweep.pipe(
          Effect.delay(hostSweepInterval),
          Effect.forever,
          Effect.interruptible,
          Effect.forkScoped
        )
        const forwarding = (entity: Entity.Entity<any, any>) =>
          Effect.map(Entity.CurrentAddress, (address) => {
            const handlers: Record<string, (request: Entity.Request<Rpc.Any>) => unknown> = {}
            for (const rpc of entity.protocol.requests.values() as Iterable<Rpc.AnyWithProps>) {
              const run = RpcSchema.isStreamSchema(rpc.successSchema) ? host.stream : host.call
              handlers[rpc._tag] = (request) => {
                host.learn(address, EntityHost.Local)
                return run(address, rpc, request.payload, request.headers)
              }
            }
            return handlers
          })
        return Context.add(context, Sharding.Sharding, {
          ...sharding,
          registerEntity: (entity, build, options) =>
            EntityHost.ineligible(entity as Entity.Entity<any, any>) !== undefined
              ? sharding.registerEntity(entity, build, options)
              : (Effect.zipRight(
                  host.register(entity as Entity.Entity<any, any>, build, options),
                  sharding.registerEntity(entity, forwarding(entity as Entity.Entity<any, any>) as never, {
                    maxIdleTime: options?.maxIdleTime,
                    concurrency: "unbounded",
                    mailboxCapacity: "unbounded",
                    disableFatalDefects: true
                  })
                ) as Effect.Effect<void, never, Scope.Scope>),
          makeClient: (entity) =>
            EntityHost.ineligible(entity as Entity.Entity<any, any>) !== undefined ||
            (ownClientTracing(entity) ?? clientTracing)
              ? sharding.makeClient(entity)
              : Effect.map(sharding.makeClient(entity), (engineClient) =>
                  host.client(entity as Entity.Entity<any, any>, engineClient)
                )
        })
      })
    )
  )

/**
 * The runner's storage as the host needs it: shard locks released only after the host stopped the
 * entities on them (the engine does the same for its own entity manager), so no entity runs on two
 * nodes at once; and the runner list watched, so the host forgets its routes when it changes.
 */
const storageForHost = Layer.effect(
  RunnerStorage.RunnerStorage,
  Effect.gen(function* () {
    const storage = yield* RunnerStorage.RunnerStorage
    const host = yield* EntityHost.EntityHost
    const config = yield* ShardingConfig.ShardingConfig
    const isSelf = (address: RunnerAddress) =>
      Option.isSome(config.runnerAddress) && Equal.equals(config.runnerAddress.value, address)
    // the engine assigns shards from this list: when it changes, routes learned before may be stale
    let runners = ""
    const reset = () => host.resetRoutes()
    const observe = (list: ReadonlyArray<readonly [Runner, boolean]>) => {
      const seen = list
        .map(([runner, healthy]) => `${runner.address.host}:${runner.address.port}:${healthy}`)
        .sort()
        .join()
      if (seen === runners) return
      runners = seen
      reset()
      // once more after the engine recomputed its assignments from this list
      setImmediate(reset)
    }
    return RunnerStorage.RunnerStorage.of({
      ...storage,
      getRunners: Effect.tap(storage.getRunners, observe),
      release: (address, shardId) =>
        isSelf(address)
          ? Effect.zipRight(host.stopShard(shardId), storage.release(address, shardId))
          : storage.release(address, shardId),
      releaseAll: (address) =>
        isSelf(address)
          ? Effect.zipRight(host.stopAll, storage.releaseAll(address))
          : storage.releaseAll(address)
    })
  })
)

/**
 * `Sharding.makeClient` builds entity clients with `ClusterSchema.ClientTracingEnabled` false unless
 * the entity sets it: a span per call costs the caller 5-13 % of an entity call. Entities are equal
 * by type, so the engine caches one client per type either way.
 */
const withoutClientTracing = <E, R>(
  runner: Layer.Layer<Sharding.Sharding | Runners.Runners, E, R>
): Layer.Layer<Sharding.Sharding | Runners.Runners, E, R> =>
  Layer.map(runner, (context) => {
    const sharding = Context.get(context, Sharding.Sharding)
    return Context.add(context, Sharding.Sharding, {
      ...sharding,
      makeClient: (entity) =>
        sharding.makeClient(
          ownClientTracing(entity) === undefined
            ? entity.annotate(ClusterSchema.ClientTracingEnabled, false)
            : entity
        )
    })
  })

/** The entity's own `ClusterSchema.ClientTracingEnabled`, if it sets one: it wins over the node's setting. */
const ownClientTracing = (entity: Entity.Entity<any, any>): boolean | undefined =>
  entity.protocol.annotations.unsafeMap.has(ClusterSchema.ClientTracingEnabled.key)
    ? Context.get(entity.protocol.annotations, ClusterSchema.ClientTracingEnabled)
    : undefined
