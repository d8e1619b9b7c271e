/**
 * The engine's runner-to-runner RPC (`Runners.Rpcs`: `Effect`, `Stream`, `Envelope`, `Notify`,
 * `Ping`) carried by Foundation's fast node RPC instead of a second `RpcClient` / `RpcServer` under
 * the entity client. Same messages, same Schemas, same protocols (`Runners.RpcClientProtocol`,
 * `RpcServer.Protocol`), so any transport the engine accepts works here.
 *
 * What it is made of, in raw calls:
 * ```ts
 * Runners.make({ ping, send, notify, onRunnerUnavailable })  // the engine's Runners, our transport
 * RunnerServer.layerHandlers                                  // the engine's handlers of Runners.Rpcs
 * Sharding.layer                                              // unchanged
 * ```
 * Per call the runner hop costs one `Effect.async` resumed by the connection's reader, codecs
 * compiled once per rpc, no span and no forked fiber on the caller (the engine's `RpcClient` adds a
 * span, a forked fiber and a per-call validator); the callee runs the handler in one fiber, without
 * `RpcServer`'s per-request context merge. Failover is the engine's: a connection that fails fails
 * its calls with `RpcClientError`, which `send` turns into `RunnerUnavailable`, and `Sharding`
 * retries elsewhere. Drop down to `RunnerServer.layerWithClients` for the engine's own transport.
 *
 * With an `EntityHost` in context, the same links also carry the host's calls (`HostRpcs`, served
 * beside `Runners.Rpcs`), and `send` tells the host which runner the engine chose for each shard.
 */
import { type MalformedMessage, RunnerUnavailable } from "@effect/cluster/ClusterError"
import * as ClusterSchema from "@effect/cluster/ClusterSchema"
import type * as Envelope from "@effect/cluster/Envelope"
import * as Message from "@effect/cluster/Message"
import type * as MessageStorage from "@effect/cluster/MessageStorage"
import * as Reply from "@effect/cluster/Reply"
import type { RunnerAddress } from "@effect/cluster/RunnerAddress"
import type * as RunnerHealth from "@effect/cluster/RunnerHealth"
import * as Runners from "@effect/cluster/Runners"
import * as RunnerServer from "@effect/cluster/RunnerServer"
import type { RunnerStorage } from "@effect/cluster/RunnerStorage"
import * as Sharding from "@effect/cluster/Sharding"
import type { ShardingConfig } from "@effect/cluster/ShardingConfig"
import * as Snowflake from "@effect/cluster/Snowflake"
import type * as Rpc from "@effect/rpc/Rpc"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import * as RpcServer from "@effect/rpc/RpcServer"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import type { ParseIssue } from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { EntityHost } from "./EntityHost.js"
import * as EntityHostInternal from "./internal/entityHost.js"
import * as FastRpc from "./internal/fastRpc.js"

type RunnersClient = Runners.RpcClient

interface Codecs {
  readonly encodePayload: (payload: unknown) => Either.Either<unknown, ParseIssue>
  readonly decodeReply: (encoded: unknown) => Either.Either<Reply.Reply<any>, ParseIssue>
}

const codecsCache = new WeakMap<Rpc.Any, Codecs>()

const codecsFor = (rpc: Rpc.Any): Codecs => {
  let codecs = codecsCache.get(rpc)
  if (!codecs) {
    codecs = {
      encodePayload: ParseResult.encodeEither(
        (rpc as unknown as Rpc.AnyWithProps).payloadSchema as Schema.Schema<unknown>
      ),
      decodeReply: ParseResult.decodeUnknownEither(
        Reply.Reply(rpc) as Schema.Schema<Reply.Reply<any>, unknown>
      )
    }
    codecsCache.set(rpc, codecs)
  }
  return codecs
}

/**
 * `Message.serializeRequest` with the payload encoder compiled once; a Schema that needs services or
 * async work (the synchronous encoder refuses it) and an invalid payload take the engine's path.
 */
const serializeRequest = (
  message: Message.OutgoingRequest<any>
): Effect.Effect<Envelope.Request.PartialEncoded, MalformedMessage> => {
  const payload = codecsFor(message.rpc).encodePayload(message.envelope.payload)
  return Either.isRight(payload)
    ? Effect.succeed({ ...message.envelope, payload: payload.right } as Envelope.Request.PartialEncoded)
    : Message.serializeRequest(message)
}

/** Decodes a reply with a decoder compiled once, or as the engine does (`Reply.Reply(rpc)` under the caller's context). */
const decodeReply = (
  message: Message.OutgoingRequest<any>,
  encoded: unknown
): Effect.Effect<Reply.Reply<any>> => {
  const reply = codecsFor(message.rpc).decodeReply(encoded)
  return Either.isRight(reply)
    ? Effect.succeed(reply.right)
    : (Schema.decode(Reply.Reply(message.rpc))(encoded as Reply.ReplyEncoded<any>).pipe(
        Effect.locally(FiberRef.currentContext, message.context),
        Effect.orDie
      ) as Effect.Effect<Reply.Reply<any>>)
}

interface Connection {
  readonly client: RunnersClient
  /** the same link's client of the entity host's group */
  readonly entities: EntityHostInternal.HostClient
  readonly scope: Scope.CloseableScope
}

/**
 * Foundation's `Runners`: `Runners.make` with `send`, `notify` and `ping` over one fast link per
 * runner (`RpcClientProtocol(address)` + the fast node RPC client of `Runners.Rpcs`). A link is kept
 * until the engine reports its runner unavailable (`onRunnerUnavailable`), a ping fails, or the
 * layer closes.
 */
export const make: Effect.Effect<
  Runners.Runners["Type"],
  never,
  | Scope.Scope
  | Runners.RpcClientProtocol
  | MessageStorage.MessageStorage
  | Snowflake.Generator
  | ShardingConfig
> = Effect.gen(function* () {
  const makeClientProtocol = yield* Runners.RpcClientProtocol
  const snowflakeGen = yield* Snowflake.Generator
  const runnersScope = yield* Effect.scope
  const connections = new Map<string, Connection>()
  const connecting = yield* Effect.makeSemaphore(1)
  const keyOf = (address: RunnerAddress) => `${address.host}:${address.port}`

  const open = (address: RunnerAddress): Effect.Effect<Connection> =>
    connecting.withPermits(1)(
      Effect.suspend(() => {
        const existing = connections.get(keyOf(address))
        if (existing) return Effect.succeed(existing)
        return Effect.gen(function* () {
          const scope = yield* Scope.fork(runnersScope, ExecutionStrategy.sequential)
          const protocol = yield* Scope.extend(makeClientProtocol(address), scope)
          const link = yield* Scope.extend(FastRpc.makeLink(protocol), scope)
          const connection: Connection = {
            client: link.client(Runners.Rpcs),
            entities: EntityHostInternal.hostClient(link),
            scope
          }
          connections.set(keyOf(address), connection)
          return connection
        })
      })
    )

  const withConnection = <A, E>(
    address: RunnerAddress,
    f: (connection: Connection) => Effect.Effect<A, E>
  ): Effect.Effect<A, E> =>
    Effect.suspend(() => {
      const existing = connections.get(keyOf(address))
      return existing ? f(existing) : Effect.flatMap(open(address), f)
    })

  const withClient = <A, E>(
    address: RunnerAddress,
    f: (client: RunnersClient) => Effect.Effect<A, E>
  ): Effect.Effect<A, E> => withConnection(address, (connection) => f(connection.client))

  const host = yield* Effect.serviceOption(EntityHost)
  if (Option.isSome(host)) {
    host.value.bindTransport({
      client: (address) => withConnection(address, (connection) => Effect.succeed(connection.entities)),
      clientNow: (address) => connections.get(keyOf(address))?.entities
    })
  }
  const learn = Option.isSome(host) ? host.value.learn : undefined

  const invalidate = (address: RunnerAddress): Effect.Effect<void> =>
    Effect.suspend(() => {
      const key = keyOf(address)
      const connection = connections.get(key)
      if (!connection) return Effect.void
      connections.delete(key)
      return Scope.close(connection.scope, Exit.void)
    })

  const dieReply = (message: Message.OutgoingRequest<any>, defect: unknown) =>
    message.respond(
      new Reply.WithExit({
        id: snowflakeGen.unsafeNext(),
        requestId: message.envelope.requestId,
        exit: Exit.die(defect)
      })
    )

  return yield* Runners.make({
    ping: (address) =>
      withClient(address, (client) => client.Ping()).pipe(
        Effect.catchAllCause(() =>
          Effect.zipRight(invalidate(address), Effect.fail(new RunnerUnavailable({ address })))
        )
      ),
    send({ address, message }) {
      const rpc = message.rpc as unknown as Rpc.AnyWithProps
      const persisted = Context.get(rpc.annotations, ClusterSchema.Persisted)
      if (message._tag === "OutgoingEnvelope") {
        return withClient(address, (client) =>
          client.Envelope({ envelope: message.envelope, persisted })
        ).pipe(Effect.catchTag("RpcClientError", () => Effect.fail(new RunnerUnavailable({ address }))))
      }
      learn?.(message.envelope.address, address)
      const respondDefect = (defect: unknown) =>
        persisted ? Effect.fail(new RunnerUnavailable({ address })) : dieReply(message, defect)
      if (!RpcSchema.isStreamSchema(rpc.successSchema)) {
        return Effect.matchEffect(serializeRequest(message), {
          onSuccess: (request) =>
            withClient(address, (client) => client.Effect({ request, persisted })).pipe(
              Effect.flatMap((reply) => decodeReply(message, reply)),
              Effect.flatMap(message.respond),
              Effect.catchTag("RpcClientError", () => Effect.fail(new RunnerUnavailable({ address }))),
              Effect.catchAllDefect(respondDefect)
            ),
          onFailure: (error) => dieReply(message, error)
        })
      }
      const decode = Schema.decode(Reply.Reply(message.rpc))
      return Effect.matchEffect(serializeRequest(message), {
        onSuccess: (request) =>
          Effect.scope.pipe(
            Effect.flatMap((scope) =>
              withClient(address, (client) =>
                Scope.extend(client.Stream({ request, persisted }, { asMailbox: true }), scope)
              )
            ),
            Effect.flatMap((mailbox) =>
              mailbox.take.pipe(
                Effect.flatMap((reply) => Effect.orDie(decode(reply))),
                Effect.flatMap(message.respond),
                Effect.forever,
                Effect.locally(FiberRef.currentContext, message.context),
                Effect.catchIf(Cause.isNoSuchElementException, () => Effect.void),
                Effect.catchTag("RpcClientError", () => Effect.fail(new RunnerUnavailable({ address }))),
                Effect.catchAllDefect(respondDefect)
              )
            ),
            Effect.scoped
          ),
        onFailure: (error) => dieReply(message, error)
      })
    },
    notify({ address, message }) {
      if (Option.isNone(address)) return Effect.void
      const encode: Effect.Effect<Envelope.AckChunk | Envelope.Interrupt | Envelope.Envelope.PartialEncoded> =
        message._tag === "OutgoingRequest"
          ? Effect.orDie(Message.serializeRequest(message))
          : Effect.succeed(message.envelope)
      return encode.pipe(
        Effect.flatMap((envelope) => withClient(address.value, (client) => client.Notify({ envelope }))),
        Effect.ignore
      )
    },
    onRunnerUnavailable: invalidate
  })
})

/** `make` as the `Runners` layer (`Runners.layerRpc` with Foundation's transport). */
export const layer: Layer.Layer<
  Runners.Runners,
  never,
  MessageStorage.MessageStorage | Runners.RpcClientProtocol | ShardingConfig
> = Layer.scoped(Runners.Runners, make).pipe(Layer.provide(Snowflake.layerGenerator))

/**
 * Serves `Runners.Rpcs` on the `RpcServer.Protocol` in context with the engine's handlers
 * (`RunnerServer.layerHandlers`, which forward to `Sharding`), on the fast node RPC server
 * (`RunnerServer.layer` does the same on `RpcServer.layer`).
 */
export const layerServer: Layer.Layer<
  never,
  never,
  RpcServer.Protocol | Sharding.Sharding | MessageStorage.MessageStorage
> = Layer.scopedDiscard(
  Effect.gen(function* () {
    const protocol = yield* RpcServer.Protocol
    const handlers = yield* FastRpc.serve(protocol)
    yield* handlers.add(
      Runners.Rpcs,
      yield* Effect.context<Rpc.ToHandler<RpcGroup.Rpcs<typeof Runners.Rpcs>>>()
    )
    const host = yield* Effect.serviceOption(EntityHost)
    if (Option.isSome(host)) yield* host.value.serve(handlers)
  })
).pipe(Layer.provide(RunnerServer.layerHandlers))

/**
 * A runner with Foundation's transport: `Sharding`, `Runners` (`layer`) and the runner server
 * (`layerServer`). The same shape as the engine's `RunnerServer.layerWithClients`.
 */
export const layerWithClients: Layer.Layer<
  Sharding.Sharding | Runners.Runners,
  never,
  | RpcServer.Protocol
  | ShardingConfig
  | Runners.RpcClientProtocol
  | MessageStorage.MessageStorage
  | RunnerStorage
  | RunnerHealth.RunnerHealth
> = layerServer.pipe(Layer.provideMerge(Sharding.layer), Layer.provideMerge(layer))
