import * as RpcClient from "@effect/rpc/RpcClient"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import { constPing } from "@effect/rpc/RpcMessage"
import type * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Net from "node:net"
import { makeCoalescingWriter } from "./coalescingWriter.js"
import { transientPacker } from "./msgpackFrames.js"
import { type DirectClient, DirectTypeId, offerEach } from "@foundation/core/internal/directProtocol"

const pingInterval = Duration.seconds(10)

const protocolError = (message: string, cause?: unknown) =>
  new RpcClientError({ reason: "Protocol", message, cause })

/**
 * A client `RpcClient.Protocol` on a raw `net.Socket`, msgpack framed, replacing
 * `RpcClient.makeProtocolSocket` over `NodeSocket.makeNet`, which waits for the kernel's write
 * callback on every frame (an async suspension per call) and forks a fiber per read.
 *
 * - Writes are coalesced: the frames sent in one event-loop turn leave as one `socket.write`
 *   (or one per `earlyFlushFrames` of them).
 * - Reads: the frames of a chunk are offered to the direct receiver first (`DirectClient`, in the
 *   read callback); the rest are handed to the client in one fiber.
 * - A connection error is reported to the client as `ClientProtocolError` (which fails every
 *   request in flight with it), and sends fail with it until a reconnect succeeds
 *   (`retrySchedule`, default every 500 ms). With `retryTransientErrors`, a failed open is retried
 *   silently instead (requests wait for the connection).
 * - Every 10 s the connection is pinged; no `Pong` within the next 10 s closes it.
 */
export const make = (
  address: { readonly host: string; readonly port: number },
  options: {
    readonly openTimeout: number
    readonly serialization: RpcSerialization.RpcSerialization["Type"]
    readonly retryTransientErrors?: boolean | undefined
    readonly retrySchedule?: Schedule.Schedule<unknown, unknown> | undefined
  }
): Effect.Effect<RpcClient.Protocol["Type"], never, Scope.Scope> =>
  RpcClient.Protocol.make((writeResponse) =>
    Effect.gen(function* () {
      const runtime = yield* Effect.runtime<never>()
      const runFork = Runtime.runFork(runtime)
      const serialization = options.serialization
      let parser = serialization.unsafeMake()
      const transient = transientPacker(serialization)
      let socket: Net.Socket | undefined
      let currentError: RpcClientError | undefined
      let awaitingPong = false
      const writer = makeCoalescingWriter()
      let lastAttemptOpened = false
      let receiver: ((message: FromServerEncoded) => boolean) | undefined

      const deliver = (responses: ReadonlyArray<FromServerEncoded>) => {
        for (const response of responses) if (response._tag === "Pong") awaitingPong = false
        const rest = offerEach(responses, receiver)
        if (rest === undefined) return
        runFork(
          rest.length === 1 ? writeResponse(rest[0]!) : Effect.forEach(rest, writeResponse, { discard: true })
        )
      }

      const unsafeSend = (request: FromClientEncoded): RpcClientError | undefined => {
        if (currentError) return currentError
        const encoded = transient ? transient(request) : parser.encode(request)
        if (encoded !== undefined) writer.write(encoded)
        return undefined
      }
      const direct: DirectClient = {
        unsafeSend,
        unsafeReceive: (handler) => {
          receiver = handler
        }
      }

      // one connection's life: resolves when it closes, with the reason
      const connection = Effect.async<never, RpcClientError>((resume) => {
        const conn = Net.connect({ host: address.host, port: address.port, noDelay: true })
        let opened = false
        lastAttemptOpened = false
        const openTimer = setTimeout(
          () => conn.destroy(new Error("Connection timed out")),
          options.openTimeout
        )
        conn.on("connect", () => {
          clearTimeout(openTimer)
          opened = true
          lastAttemptOpened = true
          parser = serialization.unsafeMake()
          socket = conn
          currentError = undefined
          awaitingPong = false
          writer.attach(conn)
        })
        conn.on("data", (chunk: Buffer) => {
          let responses: ReadonlyArray<FromServerEncoded>
          try {
            responses = parser.decode(chunk) as ReadonlyArray<FromServerEncoded>
          } catch (cause) {
            conn.destroy(cause instanceof Error ? cause : new Error(String(cause)))
            return
          }
          deliver(responses)
        })
        conn.on("error", () => {})
        conn.on("close", () => {
          clearTimeout(openTimer)
          if (socket === conn) socket = undefined
          writer.detach(conn)
          const error = conn.errored ?? undefined
          resume(
            Effect.fail(
              opened
                ? protocolError("Error in socket", error ?? new Error("connection closed"))
                : protocolError(`Could not connect to ${address.host}:${address.port}`, error)
            )
          )
        })
        return Effect.sync(() => {
          clearTimeout(openTimer)
          writer.detach(conn)
          conn.destroy()
        })
      })

      yield* connection.pipe(
        Effect.tapError((error) =>
          Effect.suspend(() => {
            writer.clear()
            if (options.retryTransientErrors && !lastAttemptOpened) return Effect.void
            currentError = error
            return writeResponse({ _tag: "ClientProtocolError", error })
          })
        ),
        Effect.retry(options.retrySchedule ?? Schedule.spaced(Duration.millis(500))),
        Effect.interruptible,
        Effect.forkScoped
      )

      yield* Effect.suspend(() => {
        if (!socket) return Effect.void
        if (awaitingPong) {
          socket.destroy(new Error("ping timeout"))
          return Effect.void
        }
        awaitingPong = true
        writer.write(parser.encode(constPing)!)
        return Effect.void
      }).pipe(Effect.delay(pingInterval), Effect.forever, Effect.interruptible, Effect.forkScoped)

      return {
        send: (request: FromClientEncoded) =>
          Effect.suspend(() => {
            const error = unsafeSend(request)
            return error ? Effect.fail(error) : Effect.void
          }),
        supportsAck: true,
        supportsTransferables: false,
        [DirectTypeId]: direct
      }
    })
  )
