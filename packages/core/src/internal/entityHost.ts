import { MailboxFull } from "@effect/cluster/ClusterError"
import * as ClusterSchema from "@effect/cluster/ClusterSchema"
import * as Entity from "@effect/cluster/Entity"
import * as EntityAddress from "@effect/cluster/EntityAddress"
import * as EntityId from "@effect/cluster/EntityId"
import * as Envelope from "@effect/cluster/Envelope"
import type * as EntityType from "@effect/cluster/EntityType"
import type { RunnerAddress } from "@effect/cluster/RunnerAddress"
import type * as Sharding from "@effect/cluster/Sharding"
import type { ShardingConfig } from "@effect/cluster/ShardingConfig"
import * as ShardId from "@effect/cluster/ShardId"
import * as Snowflake from "@effect/cluster/Snowflake"
import * as Headers from "@effect/platform/Headers"
import * as Rpc from "@effect/rpc/Rpc"
import type { RpcClientError } from "@effect/rpc/RpcClientError"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { asyncInterruptible } from "./asyncCall.js"
import * as FastRpc from "./fastRpc.js"

// -----------------------------------------------------------------------------
// Wire: how one node asks another's host to run an entity call
// -----------------------------------------------------------------------------

/** The called node does not own the entity's shard (any more): the caller routes through `Sharding`. */
export class NotHere extends Schema.TaggedError<NotHere>("@foundation/core/EntityHost/NotHere")("NotHere", {
  shard: Schema.String
}) {}

/** A streamed entity reply failed; `cause` is the entity's `Cause`, encoded with its Schemas. */
export class StreamFailed extends Schema.TaggedError<StreamFailed>(
  "@foundation/core/EntityHost/StreamFailed"
)("StreamFailed", { cause: Schema.Unknown }) {}

const Target = {
  entityType: Schema.String,
  entityId: Schema.String,
  group: Schema.String,
  shard: Schema.Int,
  tag: Schema.String,
  /** the entity rpc's payload, encoded with its Schema */
  payload: Schema.Unknown
}

const CallRpc = Rpc.make("Foundation/EntityHost/Call", {
  payload: Target,
  success: Schema.Unknown,
  error: Schema.Union(NotHere, MailboxFull)
})

const StreamRpc = Rpc.make("Foundation/EntityHost/Stream", {
  payload: Target,
  success: Schema.Unknown,
  error: Schema.Union(NotHere, MailboxFull, StreamFailed),
  stream: true
})

/** The runner-to-runner group of the host: one entity request each, answered with its encoded exit. */
export class HostRpcs extends RpcGroup.make(CallRpc, StreamRpc) {}

/** The part of `HostRpcs` served by an ordinary handler (the call is served by a `RawHandler`). */
class StreamRpcs extends RpcGroup.make(StreamRpc) {}

/** A runner link's client of `HostRpcs`. */
export interface HostClient {
  /** `HostRpcs`' call; its exit fails with `NotHere`, `MailboxFull` or the link's `RpcClientError` */
  readonly call: FastRpc.RawCall
  readonly stream: (
    target: TargetData,
    options?: { readonly headers?: Headers.Input }
  ) => Stream.Stream<unknown, NotHere | MailboxFull | StreamFailed | RpcClientError>
}

/** The host's client over one runner link. */
export const hostClient = (link: FastRpc.Link): HostClient => ({
  call: link.raw(CallRpc as unknown as Rpc.AnyWithProps),
  stream: link.client(HostRpcs)["Foundation/EntityHost/Stream"] as HostClient["stream"]
})

interface TargetData {
  readonly entityType: string
  readonly entityId: string
  readonly group: string
  readonly shard: number
  readonly tag: string
  readonly payload: unknown
}

/** How the host reaches other runners: the runner transport's links (`RunnerRpc`). */
export interface Transport {
  readonly client: (address: RunnerAddress) => Effect.Effect<HostClient>
  /** the client of an open link, without opening one */
  readonly clientNow: (address: RunnerAddress) => HostClient | undefined
}

// -----------------------------------------------------------------------------
// Hosted entities
// -----------------------------------------------------------------------------

/** What `Sharding.registerEntity` was given, ready to run. */
export interface RegisterOptions {
  readonly maxIdleTime?: Duration.DurationInput | undefined
  readonly concurrency?: number | "unbounded" | undefined
  readonly mailboxCapacity?: number | "unbounded" | undefined
  readonly disableFatalDefects?: boolean | undefined
  readonly defectRetryPolicy?: Schedule.Schedule<any, unknown> | undefined
}

interface Hosted {
  readonly entity: Entity.Entity<any, any>
  readonly build: Effect.Effect<Context.Context<never>, never, any>
  readonly context: Context.Context<never>
  readonly concurrency: number
  readonly mailboxCapacity: number
  readonly maxIdleMillis: number
  readonly fatalDefects: boolean
  readonly retryPolicy: Schedule.Schedule<any, unknown>
  readonly instances: Map<string, Instance>
}

/** One request for an entity: queued, then running in its own fiber. */
interface Work {
  readonly instance: Instance
  readonly rpc: Rpc.AnyWithProps
  readonly payload: unknown
  readonly headers: Headers.Headers
  /** turns the handler's result (an Effect, a Stream or an Effect of a Mailbox) into the fiber's body */
  readonly body: (result: unknown) => Effect.Effect<unknown, unknown>
  readonly onExit: (exit: Exit.Exit<unknown, unknown>) => void
  result: unknown
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
  /** interrupted by a restart: runs again on the rebuilt entity */
  replay: boolean
  cancelled: boolean
}

interface Instance {
  readonly hosted: Hosted
  readonly address: EntityAddress.EntityAddress
  scope: Scope.CloseableScope
  handlers: Context.Context<never> | undefined
  readonly runtimes: Map<string, Runtime.Runtime<never>>
  readonly queue: Array<Work>
  readonly running: Set<Work>
  /** requests started with `Rpc.fork`: outside the concurrency limit */
  readonly forked: Set<Work>
  lastActive: number
  restarting: boolean
  closing: boolean
  /** the delays between restarts after defects (`defectRetryPolicy`), from the first defect on */
  retries: Schedule.ScheduleDriver<unknown, unknown> | undefined
  /** the fiber building the handlers, while it runs */
  building: Fiber.RuntimeFiber<Context.Context<never>> | undefined
  onDrained: (() => void) | undefined
}

const defaultRetryPolicy = Schedule.exponential(500, 1.5).pipe(Schedule.union(Schedule.spaced("10 seconds")))

/** The route of a shard the engine delivers on this runner. */
export const Local = "local" as const

const shardKey = (shardId: ShardId.ShardId) => `${shardId.group}:${shardId.id}`

const isStreamRpc = (rpc: Rpc.AnyWithProps) => RpcSchema.isStreamSchema(rpc.successSchema)

/** Why an entity type stays on the engine's entity manager, or `undefined` if the host can run it. */
export const ineligible = (entity: Entity.Entity<any, any>): string | undefined => {
  if (Context.get(entity.protocol.annotations, Engine)) return "it is annotated EntityHost.Engine"
  for (const rpc of entity.protocol.requests.values() as Iterable<Rpc.AnyWithProps>) {
    if (Context.get(rpc.annotations, ClusterSchema.Persisted)) return `rpc ${rpc._tag} is persisted`
    if (rpc.middlewares.size > 0) return `rpc ${rpc._tag} has middleware`
  }
  return undefined
}

/**
 * Keeps an entity type on the engine's own entity manager (annotate the entity with `true`), for
 * entities that need what only the engine does: `Entity.keepAlive`, spans per request.
 */
export class Engine extends Context.Reference<Engine>()("@foundation/core/EntityHost/Engine", {
  defaultValue: () => false
}) {}

/** What the host has done since the node started (counters, for metrics and tests). */
export interface Stats {
  /** requests the host ran on this node */
  readonly served: number
  /** calls this node sent straight to the owner's host */
  readonly direct: number
  /** calls this node sent through the engine (owner unknown, shard moved, connection failed) */
  readonly viaEngine: number
}

/** The host's state; bound to the node's `Sharding` and runner transport once they exist. */
export interface Host {
  readonly stats: Stats
  readonly bind: (
    sharding: Sharding.Sharding["Type"],
    config: ShardingConfig["Type"],
    runtime: Runtime.Runtime<never>
  ) => void
  readonly bindTransport: (transport: Transport) => void
  readonly register: (
    entity: Entity.Entity<any, any>,
    build: Effect.Effect<any, never, any>,
    options: RegisterOptions | undefined
  ) => Effect.Effect<void, never, Scope.Scope>
  /**
   * the engine's routing chose `address` (or this runner, `Local`) for `entityAddress`: remember it
   * for the next calls to that shard
   */
  readonly learn: (entityAddress: EntityAddress.EntityAddress, address: RunnerAddress | typeof Local) => void
  /** forgets every route: the runners changed, so the engine may assign shards differently */
  readonly resetRoutes: () => void
  readonly call: (
    address: EntityAddress.EntityAddress,
    rpc: Rpc.AnyWithProps,
    payload: unknown,
    headers: Headers.Headers
  ) => Effect.Effect<unknown, unknown>
  readonly stream: (
    address: EntityAddress.EntityAddress,
    rpc: Rpc.AnyWithProps,
    payload: unknown,
    headers: Headers.Headers
  ) => Stream.Stream<unknown, unknown>
  readonly client: (
    entity: Entity.Entity<any, any>,
    engineClient: (entityId: string) => any
  ) => (entityId: string) => any
  /** serves `HostRpcs` for other runners on a runner endpoint */
  readonly serve: (handlers: FastRpc.Handlers) => Effect.Effect<void, never, Scope.Scope>
  /** stops this runner's entities on `shardId` (before its lock is released) */
  readonly stopShard: (shardId: ShardId.ShardId) => Effect.Effect<void>
  readonly stopAll: Effect.Effect<void>
  readonly sweep: Effect.Effect<void>
}

export const make = (): Host => {
  const hostedTypes = new Map<string, Hosted>()
  const routes = new Map<string, RunnerAddress | typeof Local>()
  const snowflakes = Effect.runSync(Snowflake.makeGenerator)
  const stats = { served: 0, direct: 0, viaEngine: 0 }
  let sharding: Sharding.Sharding["Type"] | undefined
  let config: ShardingConfig["Type"] | undefined
  let runtime: Runtime.Runtime<never> | undefined
  let transport: Transport | undefined

  const notHere = (address: EntityAddress.EntityAddress) => new NotHere({ shard: shardKey(address.shardId) })
  const owns = (address: EntityAddress.EntityAddress) =>
    sharding !== undefined && sharding.hasShardId(address.shardId)

  // --- running requests ---

  const runtimeFor = (instance: Instance, rpc: Rpc.AnyWithProps): Runtime.Runtime<never> => {
    let found = instance.runtimes.get(rpc._tag)
    if (!found) {
      const entry = instance.handlers!.unsafeMap.get(rpc.key) as Rpc.Handler<string>
      found = Runtime.make({
        context: Context.merge(entry.context, instance.handlers!),
        fiberRefs: runtime!.fiberRefs,
        runtimeFlags: Runtime.defaultRuntime.runtimeFlags
      })
      instance.runtimes.set(rpc._tag, found)
    }
    return found
  }

  const resolve = (instance: Instance, work: Work) => {
    const entry = instance.handlers!.unsafeMap.get(work.rpc.key) as Rpc.Handler<string>
    try {
      work.result = entry.handler(work.payload, { clientId: 0, headers: work.headers })
    } catch (defect) {
      work.result = Effect.die(defect)
    }
  }

  const isFork = (result: unknown) =>
    typeof result === "object" && result !== null && Rpc.isWrapper(result) && result.fork

  const start = (instance: Instance, work: Work, forked: boolean) => {
    const wrapped = typeof work.result === "object" && work.result !== null && Rpc.isWrapper(work.result)
    const value = wrapped ? (work.result as Rpc.Wrapper<unknown>).value : work.result
    const uninterruptible =
      (wrapped && (work.result as Rpc.Wrapper<unknown>).uninterruptible) ||
      ClusterSchema.Uninterruptible.forServer(work.rpc.annotations)
    const body = work.body(value)
    // the runtime's flags are the default ones: interruptible unless the rpc says otherwise
    const fiber = Runtime.runFork(
      runtimeFor(instance, work.rpc),
      uninterruptible ? Effect.uninterruptible(body) : body
    )
    work.fiber = fiber
    ;(forked ? instance.forked : instance.running).add(work)
    fiber.addObserver((exit) => finish(instance, work, forked, exit))
  }

  const pump = (instance: Instance) => {
    const limit = instance.hosted.concurrency
    // a request that ends at once (in `start`) may restart the entity: check again before each start
    while (
      instance.handlers !== undefined &&
      !instance.restarting &&
      instance.queue.length > 0 &&
      instance.running.size < limit
    ) {
      const work = instance.queue.shift()!
      if (work.result === undefined) resolve(instance, work)
      start(instance, work, isFork(work.result))
    }
    checkDrained(instance)
  }

  const checkDrained = (instance: Instance) => {
    if (instance.onDrained && isIdle(instance)) {
      const onDrained = instance.onDrained
      instance.onDrained = undefined
      onDrained()
    }
  }

  const finish = (instance: Instance, work: Work, forked: boolean, exit: Exit.Exit<unknown, unknown>) => {
    ;(forked ? instance.forked : instance.running).delete(work)
    instance.lastActive = Date.now()
    if (work.replay && !work.cancelled) {
      work.replay = false
      work.result = undefined
      work.fiber = undefined
      instance.queue.unshift(work)
    } else if (
      instance.hosted.fatalDefects &&
      !work.cancelled &&
      Exit.isFailure(exit) &&
      Cause.isDie(exit.cause) &&
      !Cause.isInterrupted(exit.cause)
    ) {
      work.result = undefined
      work.fiber = undefined
      instance.queue.unshift(work)
      restart(instance, exit.cause)
    } else {
      work.onExit(exit)
    }
    pump(instance)
  }

  // --- entity lifecycle ---

  const build = (instance: Instance) => {
    const hosted = instance.hosted
    const handlerContext = hosted.context.pipe(
      Context.add(Entity.CurrentAddress, instance.address),
      Context.add(Entity.CurrentRunnerAddress, Option.getOrThrow(config!.runnerAddress)),
      Context.add(Scope.Scope, instance.scope)
    )
    const building = hosted.build.pipe(
      Effect.provide(handlerContext),
      Effect.sandbox,
      Effect.tapError((cause) => Effect.logError("Defect building entity handlers", cause)),
      Effect.retry(hosted.retryPolicy),
      Effect.annotateLogs({ module: "EntityHost", address: instance.address.toString() })
    ) as Effect.Effect<Context.Context<never>>
    const fiber = Runtime.runFork(runtime!, building)
    instance.building = fiber
    fiber.addObserver((exit) => {
      instance.building = undefined
      if (Exit.isFailure(exit)) return
      instance.handlers = Context.merge(handlerContext, exit.value)
      instance.runtimes.clear()
      instance.restarting = false
      pump(instance)
    })
  }

  const interruptQueued = (instance: Instance) => {
    for (const work of instance.queue.splice(0)) work.onExit(Exit.interrupt(FiberId.none))
  }

  const restart = (instance: Instance, cause: Cause.Cause<unknown>) => {
    if (instance.restarting) return
    instance.restarting = true
    for (const work of instance.running) {
      work.replay = true
      work.fiber?.unsafeInterruptAsFork(work.fiber.id())
    }
    const previous = instance.scope
    // one driver per entity, kept across restarts: repeated defects back off
    instance.retries ??= Effect.runSync(Schedule.driver(instance.hosted.retryPolicy))
    Runtime.runFork(
      runtime!,
      Effect.logError("Defect in entity, restarting", cause).pipe(
        Effect.zipRight(Scope.close(previous, Exit.void)),
        Effect.zipRight(Effect.ignore(instance.retries.next(undefined))),
        Effect.zipRight(Scope.make()),
        Effect.map((scope) => {
          instance.scope = scope
          instance.handlers = undefined
          if (!instance.closing) return build(instance)
          // stopped while it waited to restart: its requests end as the entity did
          interruptQueued(instance)
          checkDrained(instance)
        }),
        Effect.annotateLogs({ module: "EntityHost", address: instance.address.toString() })
      )
    )
  }

  const instanceFor = (hosted: Hosted, address: EntityAddress.EntityAddress): Instance | NotHere => {
    const existing = hosted.instances.get(address.entityId)
    if (existing) return existing
    if (!owns(address)) return notHere(address)
    const instance: Instance = {
      hosted,
      address,
      scope: Effect.runSync(Scope.make()),
      handlers: undefined,
      runtimes: new Map(),
      queue: [],
      running: new Set(),
      forked: new Set(),
      lastActive: Date.now(),
      restarting: false,
      closing: false,
      retries: undefined,
      building: undefined,
      onDrained: undefined
    }
    hosted.instances.set(address.entityId, instance)
    build(instance)
    return instance
  }

  /**
   * Stops an entity as the engine does: no new requests, the queued and running ones get
   * `entityTerminationTimeout` to finish, then are interrupted; then its scope closes.
   */
  const stop = (instance: Instance): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (instance.hosted.instances.get(instance.address.entityId) === instance) {
        instance.hosted.instances.delete(instance.address.entityId)
      }
      if (instance.closing) return Effect.void
      instance.closing = true
      const drained = Effect.async<void>((resume) => {
        instance.onDrained = () => resume(Effect.void)
        checkDrained(instance)
      })
      return drained.pipe(
        Effect.timeout(config!.entityTerminationTimeout),
        Effect.catchAll(() =>
          Effect.zipRight(
            Effect.sync(() => interruptQueued(instance)),
            Effect.forEach(
              [...instance.running, ...instance.forked],
              (work) =>
                work.fiber ? Effect.asVoid(work.fiber.interruptAsFork(work.fiber.id())) : Effect.void,
              { discard: true }
            )
          )
        ),
        // a build still retrying after a defect, and whatever scope the entity has by now
        Effect.zipRight(
          Effect.suspend(() =>
            Effect.zipRight(
              instance.building
                ? Effect.asVoid(instance.building.interruptAsFork(FiberId.none))
                : Effect.void,
              Scope.close(instance.scope, Exit.void)
            )
          )
        )
      )
    })

  const stopWhere = (predicate: (instance: Instance) => boolean) =>
    Effect.suspend(() => {
      const stopping: Array<Instance> = []
      for (const hosted of hostedTypes.values()) {
        for (const instance of hosted.instances.values()) if (predicate(instance)) stopping.push(instance)
      }
      return Effect.forEach(stopping, stop, { concurrency: "unbounded", discard: true })
    })

  // --- submitting requests ---

  const submit = (
    address: EntityAddress.EntityAddress,
    rpc: Rpc.AnyWithProps,
    payload: unknown,
    headers: Headers.Headers,
    body: Work["body"],
    onExit: Work["onExit"]
  ): Work | NotHere | MailboxFull => {
    const hosted = hostedTypes.get(address.entityType)
    if (!hosted || !owns(address)) return notHere(address)
    const instance = instanceFor(hosted, address)
    if (instance instanceof NotHere) return instance
    if (instance.queue.length + instance.running.size >= hosted.mailboxCapacity) {
      return new MailboxFull({ address })
    }
    const work: Work = {
      instance,
      rpc,
      // what the engine's entity manager hands a handler: the request envelope, its payload decoded
      payload: new Entity.Request({
        ...Envelope.makeRequest({
          requestId: snowflakes.unsafeNext(),
          address,
          tag: rpc._tag as never,
          payload: payload as never,
          headers
        }),
        lastSentChunk: Option.none()
      }),
      headers,
      body,
      onExit,
      result: undefined,
      fiber: undefined,
      replay: false,
      cancelled: false
    }
    instance.lastActive = Date.now()
    stats.served++
    if (instance.handlers !== undefined && !instance.restarting) {
      resolve(instance, work)
      if (isFork(work.result)) {
        start(instance, work, true)
        return work
      }
    }
    instance.queue.push(work)
    pump(instance)
    return work
  }

  const cancel = (work: Work) => {
    work.cancelled = true
    const queued = work.instance.queue.indexOf(work)
    if (queued !== -1) {
      work.instance.queue.splice(queued, 1)
      work.onExit(Exit.interrupt(FiberId.none))
      checkDrained(work.instance)
    }
    work.fiber?.unsafeInterruptAsFork(work.fiber.id())
  }

  const call: Host["call"] = (address, rpc, payload, headers) =>
    asyncInterruptible<unknown, unknown>((resume) => {
      const work = submit(address, rpc, payload, headers, asEffect, resume)
      if (!("rpc" in work)) return resume(Effect.fail(work))
      return Effect.sync(() => cancel(work))
    })

  const stream: Host["stream"] = (address, rpc, payload, headers) =>
    Stream.unwrapScoped(
      Effect.gen(function* () {
        const mailbox = yield* Mailbox.make<unknown, unknown>(16)
        const body = (result: unknown) => {
          const source = Effect.isEffect(result)
            ? Stream.unwrapScoped(
                Effect.map(
                  result as Effect.Effect<Mailbox.ReadonlyMailbox<unknown, unknown>, unknown, Scope.Scope>,
                  Mailbox.toStream
                )
              )
            : (result as Stream.Stream<unknown, unknown>)
          return Stream.runForEachChunk(source, (chunk) => mailbox.offerAll(chunk))
        }
        const work = submit(address, rpc, payload, headers, body, (exit) => {
          mailbox.unsafeDone(Exit.asVoid(exit))
        })
        if (!("rpc" in work)) return Stream.fail(work)
        yield* Effect.addFinalizer(() => Effect.sync(() => cancel(work)))
        return Mailbox.toStream(mailbox)
      })
    )

  // --- serving other runners ---

  const addressOf = (target: TargetData) =>
    EntityAddress.make({
      shardId: ShardId.make(target.group, target.shard),
      entityType: target.entityType as EntityType.EntityType,
      entityId: EntityId.make(target.entityId)
    })

  const rpcOf = (target: TargetData) =>
    hostedTypes.get(target.entityType)?.entity.protocol.requests.get(target.tag) as
      | Rpc.AnyWithProps
      | undefined

  const noop = () => {}

  /** `HostRpcs`' call, run without a transport fiber: the host's own fiber is the request's. */
  const serveCall: FastRpc.RawHandler = (encoded, headers, onExit) => {
    const target = encoded as TargetData
    // an entity's shard follows from its id: a running instance's address is the one to use
    const address =
      hostedTypes.get(target.entityType)?.instances.get(target.entityId)?.address ?? addressOf(target)
    const rpc = rpcOf(target)
    if (!rpc) {
      onExit(Exit.fail(notHere(address)))
      return noop
    }
    const codecs = FastRpc.compile(rpc)
    const payload = codecs.decodePayload(target.payload)
    if (Either.isLeft(payload)) {
      replyEncoded(codecs, onExit, Exit.die(payload.left))
      return noop
    }
    const work = submit(address, rpc, payload.right, headers, asEffect, (exit) =>
      replyEncoded(codecs, onExit, exit)
    )
    if (!("rpc" in work)) {
      onExit(Exit.fail(work))
      return noop
    }
    return () => cancel(work)
  }

  const serveStream = (target: TargetData, headers: Headers.Headers) =>
    Stream.suspend(() => {
      const address = addressOf(target)
      const rpc = rpcOf(target)
      if (!rpc) return Stream.fail(notHere(address))
      const codecs = FastRpc.compile(rpc)
      const payload = codecs.decodePayload(target.payload)
      if (Either.isLeft(payload)) return Stream.die(payload.left)
      const encodeCause = causeCodecOf(rpc).encode
      return stream(address, rpc, payload.right, headers).pipe(
        Stream.mapChunksEffect((chunk) => {
          const encoded = codecs.encodeChunk(Chunk.toReadonlyArray(chunk))
          return Either.isRight(encoded)
            ? Effect.succeed(Chunk.fromIterable(encoded.right as ReadonlyArray<unknown>))
            : Effect.die(encoded.left)
        }),
        Stream.catchAllCause((cause): Stream.Stream<never, NotHere | MailboxFull | StreamFailed> => {
          const refusal = refusalOf(Exit.failCause(cause))
          if (refusal) return Stream.fail(refusal)
          if (Cause.isInterruptedOnly(cause)) return Stream.failCause(cause as Cause.Cause<never>)
          const encoded = encodeCause(cause)
          return Either.isRight(encoded)
            ? Stream.fail(new StreamFailed({ cause: encoded.right }))
            : Stream.die(encoded.left)
        })
      )
    })

  const serve: Host["serve"] = (handlers) =>
    Effect.gen(function* () {
      yield* handlers.addRaw(CallRpc as unknown as Rpc.AnyWithProps, serveCall)
      yield* handlers.add(
        StreamRpcs,
        yield* StreamRpcs.toHandlersContext(
          Effect.succeed(
            StreamRpcs.of({
              "Foundation/EntityHost/Stream": (target, { headers }) =>
                serveStream(target, headers) as Stream.Stream<unknown, NotHere | MailboxFull | StreamFailed>
            })
          )
        )
      )
    })

  // --- the client ---

  const client: Host["client"] = (entity, engineClient) => {
    const group = (entityId: string) => entity.getShardGroup(EntityId.make(entityId))
    const simulate = () => config?.simulateRemoteSerialization ?? true
    return (entityId) => {
      const id = EntityId.make(entityId)
      const address = EntityAddress.make({
        shardId: sharding!.getShardId(id, group(entityId)),
        entityType: entity.type as EntityType.EntityType,
        entityId: id
      })
      const key = shardKey(address.shardId)
      const engine = () => {
        stats.viaEngine++
        return engineClient(entityId)
      }
      // the engine client's method of the same name: an Effect, or a Stream for a stream rpc
      const viaEngine = (rpc: Rpc.AnyWithProps, payload: unknown, options: any): any =>
        engine()[rpc._tag](payload, options)
      const targetOf = (rpc: Rpc.AnyWithProps, payload: unknown): TargetData => ({
        entityType: entity.type,
        entityId,
        group: address.shardId.group,
        shard: address.shardId.id,
        tag: rpc._tag,
        payload
      })
      const forget = () => {
        routes.delete(key)
      }
      // the owner refused (`NotHere`) or could not be reached: the engine routes this call
      const rerouted = (rpc: Rpc.AnyWithProps, payload: unknown, options: any): any => {
        forget()
        return viaEngine(rpc, payload, options)
      }
      // the exit of a direct call: the entity's exit, or the host's refusal, or the link's failure
      const settle = (
        exit: Exit.Exit<unknown, unknown>,
        codecs: FastRpc.Compiled,
        rpc: Rpc.AnyWithProps,
        payload: unknown,
        options: any
      ): Effect.Effect<unknown, unknown> => {
        if (exit._tag === "Success") return codecs.decodeExit(exit.value)
        const failure = Cause.failureOption(exit.cause)
        if (Option.isNone(failure) || failure.value instanceof MailboxFull) return exit
        return rerouted(rpc, payload, options)
      }

      const local = (
        rpc: Rpc.AnyWithProps,
        codecs: FastRpc.Compiled,
        made: unknown,
        payload: unknown,
        options: any
      ): Effect.Effect<unknown, unknown> => {
        const headers = headersOf(options)
        if (!simulate()) {
          return Effect.catchIf(call(address, rpc, made, headers), isNotHere, () =>
            rerouted(rpc, payload, options)
          )
        }
        const encoded = codecs.encodePayload(made)
        if (Either.isLeft(encoded)) return Effect.die(encoded.left)
        const decoded = codecs.decodePayload(encoded.right)
        if (Either.isLeft(decoded)) return Effect.die(decoded.left)
        return Effect.flatMap(Effect.exit(call(address, rpc, decoded.right, headers)), (exit) => {
          if (refusalOf(exit) instanceof NotHere) return rerouted(rpc, payload, options)
          const wire = codecs.encodeExit(exit)
          return Either.isRight(wire) ? codecs.decodeExit(wire.right) : Exit.die(wire.left)
        })
      }

      // one suspension (`asyncInterruptible`) per call on another node: the route is read when the call runs
      const callEffect = (rpc: Rpc.AnyWithProps, payload: unknown, options: any) => {
        const codecs = FastRpc.compile(rpc)
        return asyncInterruptible<unknown, unknown>((resume) => {
          let made: unknown
          try {
            made = codecs.makePayload(payload)
          } catch (defect) {
            return resume(Effect.die(defect))
          }
          const route = routes.get(key)
          if (route === Local) return resume(local(rpc, codecs, made, payload, options))
          if (route === undefined || transport === undefined) return resume(viaEngine(rpc, payload, options))
          const encoded = codecs.encodePayload(made)
          if (Either.isLeft(encoded)) return resume(Effect.die(encoded.left))
          stats.direct++
          const callOn = (remote: HostClient, resume: (effect: Effect.Effect<unknown, unknown>) => void) =>
            remote.call(targetOf(rpc, encoded.right), options?.headers, (exit) =>
              resume(settle(exit, codecs, rpc, payload, options))
            )
          const open = transport.clientNow(route)
          if (open) return callOn(open, resume)
          return resume(
            Effect.flatMap(transport.client(route), (remote) =>
              asyncInterruptible<unknown, unknown>((resume) => callOn(remote, resume))
            )
          )
        })
      }

      const callStream = (rpc: Rpc.AnyWithProps, payload: unknown, options: any) => {
        const codecs = FastRpc.compile(rpc)
        const decodeCause = causeCodecOf(rpc).decode
        return Stream.suspend(() => {
          let made: unknown
          try {
            made = codecs.makePayload(payload)
          } catch (defect) {
            return Stream.die(defect)
          }
          const headers = headersOf(options)
          const encoded = codecs.encodePayload(made)
          if (Either.isLeft(encoded)) return Stream.die(encoded.left)
          const route = routes.get(key)
          if (route === Local) {
            const decoded = simulate() ? codecs.decodePayload(encoded.right) : Either.right(made)
            if (Either.isLeft(decoded)) return Stream.die(decoded.left)
            return stream(address, rpc, decoded.right, headers).pipe(
              Stream.catchAll((error) =>
                isNotHere(error) ? rerouted(rpc, payload, options) : Stream.fail(error)
              )
            )
          }
          if (route === undefined || transport === undefined) return viaEngine(rpc, payload, options)
          let received = false
          stats.direct++
          return Stream.unwrap(
            Effect.map(transport.client(route), (remote) =>
              remote.stream(targetOf(rpc, encoded.right), options).pipe(
                Stream.mapChunksEffect((chunk) => {
                  received = true
                  const values = codecs.decodeChunk(Chunk.toReadonlyArray(chunk))
                  return Either.isRight(values)
                    ? Effect.succeed(Chunk.fromIterable(values.right))
                    : Effect.die(values.left)
                }),
                Stream.catchAll((error): Stream.Stream<unknown, unknown> => {
                  switch (error._tag) {
                    case "StreamFailed": {
                      const cause = decodeCause(error.cause)
                      return Either.isRight(cause) ? Stream.failCause(cause.right) : Stream.die(cause.left)
                    }
                    case "MailboxFull":
                      return Stream.fail(error)
                    default:
                      return received ? Stream.die(error) : rerouted(rpc, payload, options)
                  }
                })
              )
            )
          )
        })
      }

      const methods: Record<string, unknown> = {}
      for (const rpc of entity.protocol.requests.values() as Iterable<Rpc.AnyWithProps>) {
        methods[rpc._tag] = isStreamRpc(rpc)
          ? (payload: unknown, options?: { readonly asMailbox?: boolean }) =>
              options?.asMailbox === true ||
              (options as any)?.context !== undefined ||
              (options as any)?.discard
                ? engine()[rpc._tag](payload, options)
                : callStream(rpc, payload, options)
          : (payload: unknown, options?: { readonly discard?: boolean }) =>
              options?.discard === true || (options as any)?.context !== undefined
                ? engine()[rpc._tag](payload, options)
                : callEffect(rpc, payload, options)
      }
      return methods
    }
  }

  return {
    stats,
    bind: (sharding_, config_, runtime_) => {
      sharding = sharding_
      config = config_
      runtime = runtime_
    },
    bindTransport: (transport_) => {
      transport = transport_
    },
    register: (entity, buildHandlers, options) =>
      Effect.gen(function* () {
        const context = yield* Effect.context<never>()
        const concurrency = options?.concurrency ?? 1
        const capacity = options?.mailboxCapacity ?? config!.entityMailboxCapacity
        const hosted: Hosted = {
          entity,
          build: entity.protocol.toHandlersContext(buildHandlers as Effect.Effect<any>) as Effect.Effect<
            Context.Context<never>,
            never,
            any
          >,
          context,
          concurrency: concurrency === "unbounded" ? Infinity : concurrency,
          mailboxCapacity: capacity === "unbounded" ? Infinity : capacity,
          maxIdleMillis: Duration.toMillis(options?.maxIdleTime ?? config!.entityMaxIdleTime),
          fatalDefects: options?.disableFatalDefects !== true,
          retryPolicy: options?.defectRetryPolicy
            ? Schedule.andThen(options.defectRetryPolicy, defaultRetryPolicy)
            : defaultRetryPolicy,
          instances: new Map()
        }
        hostedTypes.set(entity.type, hosted)
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() => {
            hostedTypes.delete(entity.type)
            return Effect.forEach(Array.from(hosted.instances.values()), stop, {
              concurrency: "unbounded",
              discard: true
            })
          })
        )
      }),
    learn: (entityAddress, address) => {
      routes.set(shardKey(entityAddress.shardId), address)
    },
    resetRoutes: () => routes.clear(),
    call,
    stream,
    client,
    serve,
    stopShard: (shardId) => {
      const key = shardKey(shardId)
      return stopWhere((instance) => shardKey(instance.address.shardId) === key)
    },
    stopAll: stopWhere(() => true),
    sweep: Effect.suspend(() => {
      const now = Date.now()
      return stopWhere(
        (instance) =>
          !owns(instance.address) ||
          (isIdle(instance) && now - instance.lastActive >= instance.hosted.maxIdleMillis)
      )
    })
  }
}

interface CauseCodec {
  readonly encode: (cause: Cause.Cause<unknown>) => Either.Either<unknown, ParseResult.ParseError>
  readonly decode: (encoded: unknown) => Either.Either<Cause.Cause<unknown>, ParseResult.ParseError>
}

const causeCodecs = new WeakMap<Rpc.AnyWithProps, CauseCodec>()

/** The codec of a stream rpc's failure `Cause` (its stream error Schema), compiled once. */
const causeCodecOf = (rpc: Rpc.AnyWithProps): CauseCodec => {
  let codec = causeCodecs.get(rpc)
  if (!codec) {
    const schemas = RpcSchema.getStreamSchemas(rpc.successSchema.ast)
    const failure = Option.isSome(schemas) ? schemas.value.failure : Schema.Never
    const cause = Schema.Cause({ error: failure as Schema.Schema<unknown, unknown>, defect: Schema.Defect })
    codec = { encode: Schema.encodeEither(cause), decode: Schema.decodeUnknownEither(cause) }
    causeCodecs.set(rpc, codec)
  }
  return codec
}

/** Answers a direct call with the entity's exit, encoded with the rpc's Schemas. */
const replyEncoded = (
  codecs: FastRpc.Compiled,
  onExit: (exit: Exit.Exit<unknown, unknown>) => void,
  exit: Exit.Exit<unknown, unknown>
) => {
  const encoded = codecs.encodeExit(exit)
  onExit(
    Exit.succeed(
      Either.isRight(encoded) ? encoded.right : Either.getOrThrow(codecs.encodeExit(Exit.die(encoded.left)))
    )
  )
}

const headersOf = (options: { readonly headers?: Headers.Input } | undefined): Headers.Headers =>
  options?.headers === undefined ? Headers.empty : Headers.fromInput(options.headers)

/** Nothing queued, running or forked on the instance. */
const isIdle = (instance: Instance) =>
  instance.queue.length === 0 && instance.running.size === 0 && instance.forked.size === 0

const asEffect = (result: unknown) => result as Effect.Effect<unknown, unknown>

const isNotHere = (error: unknown): error is NotHere => error instanceof NotHere

/** The host's own refusals (`NotHere`, `MailboxFull`), which the transport carries apart from the entity's exit. */
const refusalOf = (exit: Exit.Exit<unknown, unknown>): NotHere | MailboxFull | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const failure = Cause.failureOption(exit.cause)
  return Option.isSome(failure) && (failure.value instanceof NotHere || failure.value instanceof MailboxFull)
    ? failure.value
    : undefined
}
