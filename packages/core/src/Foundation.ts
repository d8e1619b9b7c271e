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
 * ```
 * The platform package supplies the parts: the runner and node server protocols, the runner client
 * protocol, the node transport, the directory and the two storages. Swap any part for your own, or
 * skip this module and compose the raw layers yourself.
 */
import * as ClusterSchema from "@effect/cluster/ClusterSchema"
import type * as MessageStorage from "@effect/cluster/MessageStorage"
import { RunnerAddress } from "@effect/cluster/RunnerAddress"
import * as RunnerHealth from "@effect/cluster/RunnerHealth"
import type * as Runners from "@effect/cluster/Runners"
import * as RunnerServer from "@effect/cluster/RunnerServer"
import type { RunnerStorage } from "@effect/cluster/RunnerStorage"
import * as Sharding from "@effect/cluster/Sharding"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import type * as RpcServer from "@effect/rpc/RpcServer"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
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
  readonly runnerStorage: Layer.Layer<RunnerStorage, E>
  readonly messageStorage: Layer.Layer<MessageStorage.MessageStorage, E>
}

/** The services a running node provides to the application layers above it. */
export type NodeServices =
  | Sharding.Sharding
  | Runners.Runners
  | Node.Node
  | MessageStorage.MessageStorage
  | RunnerStorage
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
  const runner = runnerTransport === "engine" ? RunnerServer.layerWithClients : RunnerRpc.layerWithClients
  const engine = (options.entityClientTracing === true ? runner : withoutClientTracing(runner)).pipe(
    Layer.provide(runnerHealth),
    Layer.provide([parts.runnerServer, parts.runnerClient])
  )
  const runtime = engineMode ? engine : Layer.merge(engine, FailureDetector.layerFailover)
  return runtime.pipe(
    Layer.provideMerge(node),
    Layer.provideMerge(Layer.merge(parts.runnerStorage, parts.messageStorage)),
    Layer.provideMerge(ShardingConfig.layer(shardingConfigFor(options)))
  )
}

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
          entity.protocol.annotations.unsafeMap.has(ClusterSchema.ClientTracingEnabled.key)
            ? entity
            : entity.annotate(ClusterSchema.ClientTracingEnabled, false)
        )
    })
  })
