import * as Headers from "@effect/platform/Headers"
import type * as Rpc from "@effect/rpc/Rpc"
import { exitSchema } from "@effect/rpc/Rpc"
import type * as RpcClient from "@effect/rpc/RpcClient"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import { constPong } from "@effect/rpc/RpcMessage"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import type * as RpcServer from "@effect/rpc/RpcServer"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import type { ParseError } from "effect/ParseResult"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { asyncInterruptible } from "./asyncCall.js"
import { directClient, directServer } from "./directProtocol.js"
import * as FastCodec from "./fastCodec.js"

/**
 * Node RPC without the per-call machinery of `RpcClient.make` / `RpcServer.make`: the same wire
 * messages (`RpcMessage.FromClientEncoded` / `FromServerEncoded`) over the same protocols, with every
 * Schema codec compiled once per rpc, no span per call, no fiber per call on the caller (a call is
 * one `Effect.async` resumed by the connection's reader), and one fiber per request on the callee.
 * Payloads, successes, errors and stream chunks still cross the boundary through their Schemas.
 */

/** An rpc's codecs, compiled once (`compile`). */
export interface Compiled {
  readonly rpc: Rpc.AnyWithProps
  readonly isStream: boolean
  readonly makePayload: (payload: unknown) => unknown
  readonly encodePayload: (payload: unknown) => Either.Either<unknown, ParseError>
  readonly decodePayload: (encoded: unknown) => Either.Either<unknown, ParseError>
  readonly encodeExit: (exit: Exit.Exit<unknown, unknown>) => Either.Either<ExitEncoded, ParseError>
  /** the decoded exit, or a defect carrying the `ParseError` */
  readonly decodeExit: (encoded: unknown) => Exit.Exit<unknown, unknown>
  readonly encodeChunk: (values: ReadonlyArray<unknown>) => Either.Either<unknown, ParseError>
  readonly decodeChunk: (encoded: unknown) => Either.Either<ReadonlyArray<unknown>, ParseError>
}

const compiledCache = new WeakMap<Rpc.AnyWithProps, Compiled>()

const noMiddleware = (rpc: Rpc.AnyWithProps) => {
  if (rpc.middlewares.size > 0) {
    throw new Error(
      `Foundation node RPC does not run RpcMiddleware (rpc ${rpc._tag}); serve that group with RpcServer/RpcClient`
    )
  }
}

/** The codecs of `rpc`, compiled on first use and cached; an rpc with middleware is refused. */
export const compile = (rpc: Rpc.AnyWithProps): Compiled => {
  const cached = compiledCache.get(rpc)
  if (cached) return cached
  noMiddleware(rpc)
  const payloadSchema = rpc.payloadSchema as Schema.Schema<unknown, unknown> & {
    readonly make?: (input: unknown) => unknown
  }
  // a plain struct payload is validated by its encoder; classes and defaults need their constructor
  const make = payloadSchema.make
  const makePayload =
    payloadSchema.ast._tag === "TypeLiteral" || make === undefined
      ? (payload: unknown) => payload
      : (payload: unknown) => make.call(payloadSchema, payload)
  const exit = exitSchema(rpc as unknown as Rpc.Any) as unknown as Schema.Schema<
    Exit.Exit<unknown, unknown>,
    ExitEncoded
  >
  const streamSchemas = RpcSchema.getStreamSchemas(rpc.successSchema.ast)
  const success = (Option.isSome(streamSchemas) ? Schema.Void : rpc.successSchema) as Schema.Schema<unknown>
  const encodeSuccess = FastCodec.encodeUnknownEither(success)
  const decodeSuccess = FastCodec.decodeUnknownEither(success)
  const encodeFullExit = Schema.encodeEither(exit)
  const decodeFullExit = Schema.decodeUnknownEither(exit)
  const chunk = Option.isSome(streamSchemas)
    ? (Schema.Array(streamSchemas.value.success) as unknown as Schema.Schema<ReadonlyArray<unknown>, unknown>)
    : (Schema.Array(Schema.Unknown) as Schema.Schema<ReadonlyArray<unknown>, unknown>)
  const compiled: Compiled = {
    rpc,
    isStream: Option.isSome(streamSchemas),
    makePayload,
    encodePayload: FastCodec.encodeUnknownEither(payloadSchema),
    decodePayload: FastCodec.decodeUnknownEither(payloadSchema),
    // successes skip the generic Exit/Cause codec: same wire shape, a fraction of the work
    encodeExit: (result) =>
      Exit.isSuccess(result)
        ? Either.map(encodeSuccess(result.value), (value): ExitEncoded => ({ _tag: "Success", value }))
        : encodeFullExit(result),
    decodeExit: (encoded) => {
      if ((encoded as ExitEncoded | undefined)?._tag === "Success") {
        const value = decodeSuccess((encoded as { readonly value: unknown }).value)
        return Either.isRight(value) ? Exit.succeed(value.right) : Exit.die(value.left)
      }
      const exit = decodeFullExit(encoded)
      return Either.isRight(exit) ? exit.right : Exit.die(exit.left)
    },
    encodeChunk: Schema.encodeEither(chunk),
    decodeChunk: Schema.decodeUnknownEither(chunk)
  }
  compiledCache.set(rpc, compiled)
  return compiled
}

const protocolDefect = Schema.Exit({ success: Schema.Unknown, failure: Schema.Never, defect: Schema.Defect })
const encodeDefectExit = Schema.encodeSync(protocolDefect)

/** The encoded `Exit.die(defect)`, for requests that never reach a handler. */
const dieEncoded = (defect: unknown): ExitEncoded => encodeDefectExit(Exit.die(defect)) as ExitEncoded

type ExitEncoded = Schema.ExitEncoded<unknown, unknown, unknown>

const noHeaders: ReadonlyArray<[string, string]> = []

const headersOf = (message: { readonly headers: ReadonlyArray<[string, string]> }): Headers.Headers =>
  message.headers.length === 0 ? Headers.empty : Headers.fromInput(message.headers)

/** `decodeOrRefuse`'s answer for a payload that failed its Schema. */
const refused: unique symbol = Symbol("refused")

// -----------------------------------------------------------------------------
// Client
// -----------------------------------------------------------------------------

type Waiting =
  | {
      readonly _tag: "Effect"
      readonly compiled: Compiled
      readonly resume: (exit: Exit.Exit<unknown, unknown>) => void
    }
  | {
      readonly _tag: "Stream"
      readonly compiled: Compiled
      readonly mailbox: Mailbox.Mailbox<unknown, unknown>
    }

/** One connection's client side: the requests waiting for an answer, and the typed clients over it. */
export interface Link {
  readonly client: <Rpcs extends Rpc.Any>(
    group: RpcGroup.RpcGroup<Rpcs>
  ) => RpcClient.RpcClient<Rpcs, RpcClientError>
  /** a non-stream `rpc` as a `RawCall`, for callers that already run inside an `Effect.async` */
  readonly raw: (rpc: Rpc.AnyWithProps) => RawCall
}

/**
 * Sends one request now and hands its exit (decoded, or the connection's error) to `onExit`;
 * returns what interrupts it. The client-side mirror of `RawHandler`.
 */
export type RawCall = (
  payload: unknown,
  headers: Headers.Input | undefined,
  onExit: (exit: Exit.Exit<unknown, unknown>) => void
) => Effect.Effect<void>

/**
 * Runs the client side of `protocol`: answers are matched to waiting calls by request id, decoded
 * through the rpc's exit Schema and resumed in place. A `ClientProtocolError` (the connection failed)
 * fails every waiting call with it; a `Defect` frame kills them.
 */
export const makeLink = (protocol: RpcClient.Protocol["Type"]): Effect.Effect<Link, never, Scope.Scope> =>
  Effect.gen(function* () {
    const waiting = new Map<string, Waiting>()
    const direct = directClient(protocol)
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    let nextId = 0
    const clients = new WeakMap<RpcGroup.RpcGroup<any>, unknown>()

    const settle = (entry: Waiting, exit: Exit.Exit<unknown, unknown>) => {
      if (entry._tag === "Stream") {
        entry.mailbox.unsafeDone(Exit.asVoid(exit))
      } else {
        entry.resume(exit)
      }
    }

    const failAll = (exit: Exit.Exit<never, unknown>) => {
      const entries = Array.from(waiting.values())
      waiting.clear()
      for (const entry of entries) settle(entry, exit)
    }

    const onChunk = (requestId: string, values: unknown) => {
      const entry = waiting.get(requestId)
      if (!entry || entry._tag !== "Stream") return Effect.void
      const decoded = entry.compiled.decodeChunk(values)
      if (Either.isLeft(decoded)) {
        waiting.delete(requestId)
        entry.mailbox.unsafeDone(Exit.die(decoded.left))
        return send({ _tag: "Interrupt", requestId })
      }
      const ack = protocol.supportsAck ? send({ _tag: "Ack", requestId }) : Effect.void
      const rest = entry.mailbox.unsafeOfferAll(decoded.right)
      if (rest.length === 0) return ack
      // the consumer's buffer is full: acknowledge once it has room, so the server waits
      return Effect.forkDaemon(Effect.zipRight(entry.mailbox.offerAll(rest), ack))
    }

    // an Effect call's answer is its only message, so it may overtake the stream messages left to `run`
    const onEffectExit = (message: FromServerEncoded): boolean => {
      if (message._tag !== "Exit") return false
      const entry = waiting.get(message.requestId)
      if (entry?._tag === "Stream") return false
      if (entry) onExit(entry, message.requestId, message.exit)
      return true
    }

    const onExit = (entry: Waiting, requestId: string, exit: unknown) => {
      waiting.delete(requestId)
      settle(entry, entry.compiled.decodeExit(exit))
    }

    const onMessage = (message: FromServerEncoded): Effect.Effect<void> => {
      switch (message._tag) {
        case "Exit": {
          const entry = waiting.get(message.requestId)
          if (entry) onExit(entry, message.requestId, message.exit)
          return Effect.void
        }
        case "Chunk":
          return onChunk(message.requestId, message.values)
        case "Defect":
          failAll(Exit.die(message.defect))
          return Effect.void
        case "ClientProtocolError":
          failAll(Exit.fail(message.error))
          return Effect.void
        default:
          return Effect.void
      }
    }

    const send = (message: FromClientEncoded) =>
      Effect.catchAll(protocol.send(message), () => Effect.void) as Effect.Effect<void>

    direct?.unsafeReceive(onEffectExit)
    yield* protocol
      .run((message) => Effect.suspend(() => onMessage(message)))
      .pipe(Effect.interruptible, Effect.forkScoped)
    let closed = false
    const closedError = () => new RpcClientError({ reason: "Protocol", message: "the connection was closed" })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
        failAll(Exit.fail(closedError()))
      })
    )

    const request = (
      compiled: Compiled,
      id: string,
      payload: unknown,
      headers: Headers.Input | undefined
    ): Either.Either<FromClientEncoded, ParseError> =>
      Either.map(compiled.encodePayload(compiled.makePayload(payload)), (encoded) => ({
        _tag: "Request" as const,
        id,
        tag: compiled.rpc._tag,
        payload: encoded,
        headers: headers === undefined ? noHeaders : Object.entries(Headers.fromInput(headers))
      }))

    // without the transport's direct hooks a request is sent by a forked `protocol.send`, whose
    // failure fails the waiting call
    const sendNow =
      direct?.unsafeSend ??
      ((message: FromClientEncoded) => {
        runFork(
          Effect.catchAll(protocol.send(message), (error) =>
            Effect.sync(() => {
              const id = message._tag === "Request" ? message.id : undefined
              const entry = id === undefined ? undefined : waiting.get(id)
              if (entry) {
                waiting.delete(id!)
                settle(entry, Exit.fail(error))
              }
            })
          )
        )
        return undefined
      })

    const call = (
      compiled: Compiled,
      payload: unknown,
      options: { readonly headers?: Headers.Input; readonly discard?: boolean } | undefined
    ): Effect.Effect<unknown, unknown> => {
      if (options?.discard) {
        return Effect.suspend(() => {
          if (closed) return Effect.fail(closedError())
          const message = request(compiled, String(nextId++), payload, options.headers)
          return Either.isLeft(message) ? Effect.die(message.left) : protocol.send(message.right)
        })
      }
      return asyncInterruptible<unknown, unknown>((resume) =>
        callRaw(compiled, payload, options?.headers, resume)
      )
    }

    const callRaw = (
      compiled: Compiled,
      payload: unknown,
      headers: Headers.Input | undefined,
      onExit: (exit: Exit.Exit<unknown, unknown>) => void
    ): Effect.Effect<void> => {
      if (closed) {
        onExit(Exit.fail(closedError()))
        return Effect.void
      }
      const id = String(nextId++)
      const message = request(compiled, id, payload, headers)
      if (Either.isLeft(message)) {
        onExit(Exit.die(message.left))
        return Effect.void
      }
      waiting.set(id, { _tag: "Effect", compiled, resume: onExit })
      const error = sendNow(message.right)
      if (error) {
        waiting.delete(id)
        onExit(Exit.fail(error))
        return Effect.void
      }
      return Effect.suspend(() =>
        waiting.delete(id) ? send({ _tag: "Interrupt", requestId: id }) : Effect.void
      )
    }

    const stream = (
      compiled: Compiled,
      payload: unknown,
      options: { readonly headers?: Headers.Input; readonly streamBufferSize?: number } | undefined
    ): Effect.Effect<Mailbox.ReadonlyMailbox<unknown, unknown>, never, Scope.Scope> =>
      Effect.gen(function* () {
        const id = String(nextId++)
        const message = request(compiled, id, payload, options?.headers)
        if (Either.isLeft(message)) return yield* Effect.die(message.left)
        const mailbox = yield* Mailbox.make<unknown, unknown>(options?.streamBufferSize ?? 16)
        if (closed) {
          mailbox.unsafeDone(Exit.fail(closedError()))
          return mailbox
        }
        waiting.set(id, { _tag: "Stream", compiled, mailbox })
        yield* Effect.addFinalizer(() =>
          waiting.delete(id) ? send({ _tag: "Interrupt", requestId: id }) : Effect.void
        )
        yield* protocol.send(message.right).pipe(
          Effect.catchAll((error) =>
            Effect.sync(() => {
              waiting.delete(id)
              mailbox.unsafeDone(Exit.fail(error))
            })
          )
        )
        return mailbox
      })

    const typed = (group: RpcGroup.RpcGroup<any>) => {
      const client: Record<string, any> = {}
      for (const rpc of group.requests.values() as Iterable<Rpc.AnyWithProps>) {
        const compiled = compile(rpc)
        const dot = rpc._tag.indexOf(".")
        const prefix = dot === -1 ? undefined : rpc._tag.slice(0, dot)
        const target = prefix === undefined ? client : (client[prefix] ??= {})
        target[prefix === undefined ? rpc._tag : rpc._tag.slice(dot + 1)] = compiled.isStream
          ? (payload: unknown, options?: { asMailbox?: boolean; headers?: Headers.Input }) => {
              const mailbox = stream(compiled, payload, options)
              return options?.asMailbox ? mailbox : Stream.unwrapScoped(Effect.map(mailbox, Mailbox.toStream))
            }
          : (payload: unknown, options?: { headers?: Headers.Input; discard?: boolean }) =>
              call(compiled, payload, options)
      }
      return client
    }

    return {
      client: <Rpcs extends Rpc.Any>(group: RpcGroup.RpcGroup<Rpcs>) => {
        let client = clients.get(group)
        if (!client) {
          client = typed(group)
          clients.set(group, client)
        }
        return client as RpcClient.RpcClient<Rpcs, RpcClientError>
      },
      raw: (rpc) => {
        const compiled = compile(rpc)
        return (payload, headers, onExit) => callRaw(compiled, payload, headers, onExit)
      }
    }
  })

// -----------------------------------------------------------------------------
// Server
// -----------------------------------------------------------------------------

interface Served {
  readonly compiled: Compiled
  readonly handler: Rpc.Handler<string>
  readonly runtime: Runtime.Runtime<never>
}

/**
 * A handler that runs without a fiber of its own: it is given the decoded payload and a callback
 * for the exit, and returns how to interrupt the request. For a service that already runs requests
 * in fibers of its own (the entity host), so a request costs one fiber instead of two.
 */
export type RawHandler = (
  payload: unknown,
  headers: Headers.Headers,
  onExit: (exit: Exit.Exit<unknown, unknown>) => void
) => () => void

/** The handlers of an endpoint, by rpc tag; groups are added and removed while it serves. */
export interface Handlers {
  readonly add: <Rpcs extends Rpc.Any>(
    group: RpcGroup.RpcGroup<Rpcs>,
    context: Context.Context<never>
  ) => Effect.Effect<void, never, Scope.Scope>
  /** serves a non-stream `rpc` with a `RawHandler` */
  readonly addRaw: (rpc: Rpc.AnyWithProps, handler: RawHandler) => Effect.Effect<void, never, Scope.Scope>
}

/**
 * Serves every group added to the returned `Handlers` on `protocol`. Each request runs in its own
 * fiber (`Runtime.runFork`), whose observer encodes and sends its exit; `Interrupt` interrupts it, a
 * disconnect interrupts all of a client's requests, `Ping` is answered with `Pong`. A request for an
 * unknown tag, or whose payload fails its Schema, is answered with a defect naming the problem, and
 * the connection keeps serving.
 */
export const serve = (protocol: RpcServer.Protocol["Type"]): Effect.Effect<Handlers, never, Scope.Scope> =>
  Effect.gen(function* () {
    const served = new Map<string, Served>()
    const raw = new Map<string, { readonly compiled: Compiled; readonly handler: RawHandler }>()
    // how to interrupt each running request, by client and request id
    const clients = new Map<number, Map<string, () => void>>()
    const runningOf = (clientId: number) => {
      let running = clients.get(clientId)
      if (!running) clients.set(clientId, (running = new Map<string, () => void>()))
      return running
    }
    const refuseServed = (tag: string) => {
      if (served.has(tag) || raw.has(tag)) throw new Error(`rpc ${tag} is already served on this node`)
    }
    const latches = new Map<string, Effect.Latch>()
    const base = yield* Effect.runtime<never>()
    const direct = directServer(protocol)

    const respond = (clientId: number, message: FromServerEncoded) => protocol.send(clientId, message)
    const respondNow =
      direct?.unsafeSend ??
      ((clientId: number, message: FromServerEncoded) => {
        Runtime.runFork(base, respond(clientId, message))
      })

    const exitMessage = (compiled: Compiled, requestId: string, exit: Exit.Exit<unknown, unknown>) => {
      const encoded = compiled.encodeExit(exit)
      return {
        _tag: "Exit" as const,
        requestId,
        exit: Either.isRight(encoded) ? encoded.right : dieEncoded(encoded.left)
      }
    }

    const streamBody = (
      entry: Served,
      clientId: number,
      requestId: string,
      stream: Stream.Stream<unknown, unknown>
    ): Effect.Effect<void, unknown> => {
      const latch = protocol.supportsAck ? Effect.unsafeMakeLatch(false) : undefined
      if (latch) latches.set(`${clientId}:${requestId}`, latch)
      return Stream.runForEachChunk(stream, (chunk) => {
        if (Chunk.isEmpty(chunk)) return Effect.void
        const encoded = entry.compiled.encodeChunk(Chunk.toReadonlyArray(chunk))
        if (Either.isLeft(encoded)) return Effect.die(encoded.left)
        const write = respond(clientId, {
          _tag: "Chunk",
          requestId,
          values: encoded.right as [unknown, ...Array<unknown>]
        })
        if (!latch) return write
        latch.unsafeClose()
        return Effect.zipRight(write, latch.await)
      }).pipe(Effect.ensuring(Effect.sync(() => latches.delete(`${clientId}:${requestId}`))))
    }

    /** The request's payload, decoded; or `refused` once a payload its Schema rejects was answered. */
    const decodeOrRefuse = (
      clientId: number,
      message: Extract<FromClientEncoded, { _tag: "Request" }>,
      compiled: Compiled
    ): unknown => {
      const payload = compiled.decodePayload(message.payload)
      if (Either.isRight(payload)) return payload.right
      respondNow(clientId, {
        _tag: "Exit",
        requestId: message.id,
        exit: dieEncoded(new Error(`Invalid payload for ${message.tag}: ${payload.left.message}`))
      })
      return refused
    }

    const startRaw = (
      clientId: number,
      message: Extract<FromClientEncoded, { _tag: "Request" }>,
      entry: { readonly compiled: Compiled; readonly handler: RawHandler }
    ) => {
      const payload = decodeOrRefuse(clientId, message, entry.compiled)
      if (payload === refused) return
      const running = runningOf(clientId)
      let done = false
      const interrupt = entry.handler(payload, headersOf(message), (exit) => {
        done = true
        running.delete(message.id)
        respondNow(clientId, exitMessage(entry.compiled, message.id, exit))
      })
      if (!done) running.set(message.id, interrupt)
    }

    const start = (clientId: number, message: Extract<FromClientEncoded, { _tag: "Request" }>) => {
      const rawEntry = raw.get(message.tag)
      if (rawEntry) return startRaw(clientId, message, rawEntry)
      const entry = served.get(message.tag)
      if (!entry) {
        return respondNow(clientId, {
          _tag: "Exit",
          requestId: message.id,
          exit: dieEncoded(`Unknown request tag: ${message.tag}`)
        })
      }
      const payload = decodeOrRefuse(clientId, message, entry.compiled)
      if (payload === refused) return
      const result = entry.handler.handler(payload, {
        clientId,
        headers: headersOf(message)
      }) as unknown
      const wrapped = typeof result === "object" && result !== null && "value" in result && "fork" in result
      const value = (wrapped ? (result as { value: unknown }).value : result) as
        | Effect.Effect<unknown, unknown>
        | Stream.Stream<unknown, unknown>
      // a stream handler may answer with a Stream or, as `RpcServer` accepts, with an Effect of a Mailbox
      const body = !entry.compiled.isStream
        ? (value as Effect.Effect<unknown, unknown>)
        : Effect.isEffect(value)
          ? Effect.scoped(
              Effect.flatMap(
                value as Effect.Effect<Mailbox.ReadonlyMailbox<unknown, unknown>, unknown, Scope.Scope>,
                (mailbox) => streamBody(entry, clientId, message.id, Mailbox.toStream(mailbox))
              )
            )
          : streamBody(entry, clientId, message.id, value as Stream.Stream<unknown, unknown>)
      const uninterruptible = wrapped && (result as { uninterruptible?: boolean }).uninterruptible === true
      const running = runningOf(clientId)
      // the answer is written by the fiber's observer, which runs whatever ended it (interruption too)
      const fiber = Runtime.runFork(entry.runtime, uninterruptible ? Effect.uninterruptible(body) : body)
      running.set(message.id, () => fiber.unsafeInterruptAsFork(fiber.id()))
      fiber.addObserver((exit) => {
        running.delete(message.id)
        respondNow(clientId, exitMessage(entry.compiled, message.id, exit))
      })
    }

    const onRequest = (clientId: number, message: FromClientEncoded): boolean => {
      switch (message._tag) {
        case "Request":
          start(clientId, message)
          break
        case "Ack":
          latches.get(`${clientId}:${message.requestId}`)?.unsafeOpen()
          break
        case "Interrupt": {
          clients.get(clientId)?.get(message.requestId)?.()
          break
        }
        case "Ping":
          respondNow(clientId, constPong)
          break
      }
      return true
    }

    yield* protocol.disconnects.take.pipe(
      Effect.flatMap((clientId) =>
        Effect.suspend(() => {
          const running = clients.get(clientId)
          clients.delete(clientId)
          if (running) for (const interrupt of running.values()) interrupt()
          return Effect.void
        })
      ),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )

    direct?.unsafeReceive(onRequest)
    yield* protocol
      .run((clientId, message) => Effect.sync(() => onRequest(clientId, message)))
      .pipe(Effect.interruptible, Effect.forkScoped)

    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const running of clients.values()) for (const interrupt of running.values()) interrupt()
      })
    )

    return {
      add: (group, context) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            const tags: Array<string> = []
            for (const rpc of group.requests.values() as Iterable<Rpc.AnyWithProps>) {
              refuseServed(rpc._tag)
              const handler = context.unsafeMap.get(rpc.key) as Rpc.Handler<string> | undefined
              if (!handler) throw new Error(`no handler for rpc ${rpc._tag} (provide the group's toLayer)`)
              served.set(rpc._tag, {
                compiled: compile(rpc),
                handler,
                runtime: Runtime.make({
                  context: Context.merge(base.context, handler.context),
                  fiberRefs: base.fiberRefs,
                  // the endpoint is built inside an uninterruptible layer; requests must stay interruptible
                  runtimeFlags: Runtime.defaultRuntime.runtimeFlags
                })
              })
              tags.push(rpc._tag)
            }
            return tags
          }),
          (tags) => Effect.sync(() => tags.forEach((tag) => served.delete(tag)))
        ).pipe(Effect.asVoid, Effect.orDie),
      addRaw: (rpc, handler) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            refuseServed(rpc._tag)
            raw.set(rpc._tag, { compiled: compile(rpc), handler })
          }),
          () => Effect.sync(() => raw.delete(rpc._tag))
        ).pipe(Effect.orDie)
    }
  })
