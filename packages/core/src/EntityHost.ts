/**
 * Foundation's entity host: runs the entities of a node and carries the calls to them, in place of
 * the engine's entity manager and entity client, for the entity types it can run exactly as the
 * engine would. `Foundation.layerNode` installs it (`NodeOptions.entityHost`, default `foundation`).
 *
 * The engine keeps everything else: shard assignment, runner membership, storage, persisted
 * messages, singletons. Per hosted entity type, in raw calls:
 * ```ts
 * sharding.registerEntity(entity, forwardingHandlers, { concurrency: "unbounded" })
 *   // the engine still knows the type; a message it delivers (a fallback call) runs on the host
 * sharding.hasShardId(address.shardId)     // before every local run: only the shard's owner runs it
 * sharding.makeClient(entity)              // the fallback client, until the owner's runner is known
 * Runners.send({ address, message })       // RunnerRpc tells the host which runner the engine chose
 * RunnerStorage.release / releaseAll       // stop the shard's entities first, then release the lock
 * ```
 * A call goes to the owner directly (one fast node RPC message, `HostRpcs`), or runs in place when
 * this node owns the shard. Until the owner is known, or when it answers `NotHere` (the shard moved)
 * or its connection fails, the call takes the engine's path, which routes and retries as usual.
 *
 * What the host keeps from the engine's entity manager: one instance per entity id per cluster,
 * built lazily with `CurrentAddress`, `CurrentRunnerAddress` and a `Scope`; `concurrency` (default 1,
 * first come first served) with `Rpc.fork` outside it; `mailboxCapacity` (`MailboxFull`);
 * `maxIdleTime`; a defect restarts the entity and replays its running requests after
 * `defectRetryPolicy` (unless `disableFatalDefects`); typed errors, streamed replies with
 * backpressure, interruption; `entityTerminationTimeout` when an entity stops;
 * `simulateRemoteSerialization` for calls that run in place.
 *
 * What stays on the engine: entities with a persisted rpc, with rpc middleware, or annotated
 * `EntityHost.Engine` (use it for entities that call `Entity.keepAlive` or want a span per request,
 * which the host does not open); entity clients with tracing on (`ClusterSchema.ClientTracingEnabled`).
 */
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"
import * as internal from "./internal/entityHost.js"

/** The node's entity host (`make`); `Foundation.layerNode` provides and wires it. */
export class EntityHost extends Context.Tag("@foundation/core/EntityHost")<EntityHost, internal.Host>() {}

/**
 * Annotate an entity with `EntityHost.Engine, true` to keep it on the engine's entity manager:
 * `entity.annotate(EntityHost.Engine, true)`.
 */
export const Engine = internal.Engine

/** The route of a shard the engine delivers on this runner (`Host.learn`). */
export const Local = internal.Local

/** The host's answer when the called runner does not own the entity's shard (any more). */
export const NotHere = internal.NotHere

/** The runner-to-runner group the host serves on the runner endpoint (`RunnerRpc.layerServer`). */
export const HostRpcs = internal.HostRpcs

/** Why `entity` stays on the engine's entity manager, or `undefined` when the host runs it. */
export const ineligible = internal.ineligible

/** A host with nothing registered and nothing bound yet. */
export const make: () => internal.Host = internal.make

/** `make` as a layer. */
export const layer: Layer.Layer<EntityHost> = Layer.sync(EntityHost, make)
