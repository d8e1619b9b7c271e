import * as NodeSocket from "@effect/platform-node/NodeSocket"
import type * as Socket from "@effect/platform/Socket"
import * as SocketServer from "@effect/platform/SocketServer"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import { ResponseDefectEncoded } from "@effect/rpc/RpcMessage"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as RpcServer from "@effect/rpc/RpcServer"
import { MalformedFrame } from "@foundation/core/NodeError"
import * as Effect from "effect/Effect"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { makeCoalescingWriter } from "./coalescingWriter.js"
import { transientPacker } from "./msgpackFrames.js"
import { type DirectServer, DirectTypeId, offerEach } from "@foundation/core/internal/directProtocol"

const encodeMalformed = Schema.encodeSync(MalformedFrame)

/** The `Defect` frame sent to a peer before its connection is closed. */
const malformedResponse = (error: MalformedFrame): FromServerEncoded => ({
  _tag: "Defect",
  defect: { ...encodeMalformed(error), name: "MalformedFrame", message: error.message }
})

const isRequestId = (u: unknown): boolean =>
  typeof u === "bigint" || (typeof u === "string" && /^-?\d{1,20}$/.test(u))

const isHeaders = (u: unknown): boolean =>
  Array.isArray(u) &&
  u.every((entry) => Array.isArray(entry) && typeof entry[0] === "string" && typeof entry[1] === "string")

const isOptional = (u: unknown, type: "string" | "boolean"): boolean => u === undefined || typeof u === type

const describe = (u: unknown): string => (u === null ? "null" : Array.isArray(u) ? "an array" : typeof u)

/** Why a decoded value is not a client message, or `undefined` if it is one. */
const invalidReason = (u: unknown): string | undefined => {
  if (typeof u !== "object" || u === null || Array.isArray(u)) {
    return `expected an RPC message object, got ${describe(u)}`
  }
  const message = u as Record<string, unknown>
  switch (message._tag) {
    case "Request":
      if (!isRequestId(message.id)) return "Request.id must be an integer string"
      if (typeof message.tag !== "string") return "Request.tag must be a string"
      if (!isHeaders(message.headers)) return "Request.headers must be a list of [name, value] pairs"
      if (!isOptional(message.traceId, "string") || !isOptional(message.spanId, "string")) {
        return "Request.traceId and Request.spanId must be strings"
      }
      if (!isOptional(message.sampled, "boolean")) return "Request.sampled must be a boolean"
      return undefined
    case "Ack":
    case "Interrupt":
      return isRequestId(message.requestId)
        ? undefined
        : `${message._tag}.requestId must be an integer string`
    case "Ping":
    case "Eof":
      return undefined
    default:
      return `unknown message tag ${JSON.stringify(String(message._tag))}`
  }
}

const errorMessage = (cause: unknown): string =>
  cause instanceof Error ? cause.message : typeof cause === "string" ? cause : "undecodable bytes"

/**
 * The socket server protocol of `RpcServer.layerProtocolSocketServer` (one client per connection,
 * frames decoded with the `RpcSerialization` in context, acks and span propagation supported), with
 * one difference: every decoded frame is checked before it reaches the server. Bytes that do not
 * decode, or decode to something that is not a client message, are answered with a `Defect` frame
 * carrying `MalformedFrame`, and that connection alone is closed.
 */
export const make = Effect.gen(function* () {
  const server = yield* SocketServer.SocketServer
  const serialization = yield* RpcSerialization.RpcSerialization
  const disconnects = yield* Mailbox.make<number>()
  const clients = new Map<number, (response: FromServerEncoded) => Effect.Effect<void>>()
  const clientsNow = new Map<number, (response: FromServerEncoded) => void>()
  const clientIds = new Set<number>()
  let nextClientId = 0
  let writeRequest!: (clientId: number, message: FromClientEncoded) => Effect.Effect<void>
  let receiver: ((clientId: number, message: FromClientEncoded) => boolean) | undefined

  const onSocket = (socket: Socket.Socket) =>
    Effect.gen(function* () {
      const parser = serialization.unsafeMake()
      const id = nextClientId++
      const netSocket = yield* Effect.serviceOption(NodeSocket.NetSocket)
      const remote = Option.match(netSocket, {
        onNone: () => "unknown peer",
        onSome: (conn) => `${conn.remoteAddress}:${conn.remotePort}`
      })
      yield* Effect.addFinalizer(() =>
        Effect.suspend(() => {
          clientIds.delete(id)
          clients.delete(id)
          clientsNow.delete(id)
          return disconnects.offer(id)
        })
      )
      const encodeWith =
        (pack: (response: FromServerEncoded) => Uint8Array | string | undefined) =>
        (response: FromServerEncoded) => {
          try {
            return pack(response)
          } catch (cause) {
            return pack(ResponseDefectEncoded(cause))
          }
        }
      // the writer copies at once, so frames may be packed in place; a platform socket's writer may not
      const encodeForWriter = encodeWith(transientPacker(serialization) ?? parser.encode)
      const encodeForSocket = encodeWith(parser.encode)
      const coalescing = Option.map(netSocket, (conn) => {
        const writer = makeCoalescingWriter()
        writer.attach(conn)
        return writer
      })
      const writeNow = Option.map(coalescing, (writer) => (response: FromServerEncoded) => {
        const encoded = encodeForWriter(response)
        if (encoded !== undefined) writer.write(encoded)
      })
      const write = Option.isSome(writeNow)
        ? (response: FromServerEncoded) => Effect.sync(() => writeNow.value(response))
        : yield* Effect.map(socket.writer, (writeRaw) => (response: FromServerEncoded) => {
            const encoded = encodeForSocket(response)
            return encoded === undefined ? Effect.void : Effect.orDie(writeRaw(encoded))
          })
      clientIds.add(id)
      clients.set(id, write)
      if (Option.isSome(writeNow)) clientsNow.set(id, writeNow.value)

      const receive = (message: FromClientEncoded) => receiver!(id, message)

      const reject = (reason: string) => {
        const error = new MalformedFrame({ reason })
        // the connection closes next: the defect must leave before the socket is ended
        return Effect.ignore(write(malformedResponse(error))).pipe(
          Effect.zipRight(Effect.sync(() => Option.map(coalescing, (writer) => writer.flush()))),
          Effect.zipRight(Effect.fail(error))
        )
      }

      yield* socket
        .runRaw((data) => {
          let decoded: ReadonlyArray<unknown>
          try {
            decoded = parser.decode(data)
          } catch (cause) {
            return reject(errorMessage(cause))
          }
          for (const message of decoded) {
            const reason = invalidReason(message)
            if (reason !== undefined) return reject(reason)
          }
          const rest = offerEach(decoded as ReadonlyArray<FromClientEncoded>, receiver && receive)
          if (rest === undefined) return
          return rest.length === 1
            ? writeRequest(id, rest[0]!)
            : Effect.forEach(rest, (message) => writeRequest(id, message), { discard: true })
        })
        .pipe(
          Effect.catchAll((error) =>
            error._tag === "MalformedFrame"
              ? Effect.logWarning(`closed the connection from ${remote}: ${error.message}`)
              : error.reason === "Close"
                ? Effect.void
                : Effect.logDebug(`connection from ${remote} failed`, error)
          ),
          Effect.interruptible
        )
    }).pipe(Effect.scoped)

  const direct: DirectServer = {
    unsafeSend: (clientId, response) => {
      const writeNow = clientsNow.get(clientId)
      if (writeNow) return writeNow(response)
      const write = clients.get(clientId)
      if (write) Effect.runFork(write(response))
    },
    unsafeReceive: (handler) => {
      receiver = handler
    }
  }

  const protocol = yield* RpcServer.Protocol.make((writeRequest_) => {
    writeRequest = writeRequest_
    return Effect.succeed({
      disconnects,
      send: (clientId, response) => {
        const write = clients.get(clientId)
        return write ? write(response) : Effect.void
      },
      end: () => Effect.void,
      clientIds: Effect.sync(() => clientIds),
      initialMessage: Effect.succeedNone,
      supportsAck: true,
      supportsTransferables: false,
      supportsSpanPropagation: true,
      [DirectTypeId]: direct
    })
  })

  yield* server.run(onSocket).pipe(
    Effect.catchAll((error) => Effect.logError("socket server stopped", error)),
    Effect.interruptible,
    Effect.forkScoped
  )
  return protocol
})
