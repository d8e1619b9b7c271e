import type * as RpcClient from "@effect/rpc/RpcClient"
import type { RpcClientError } from "@effect/rpc/RpcClientError"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import type * as RpcServer from "@effect/rpc/RpcServer"

/**
 * Synchronous hooks a transport may attach to its `RpcClient.Protocol` / `RpcServer.Protocol`
 * objects, under `DirectTypeId`. The fast node RPC (`fastRpc.ts`) uses them when present: a call
 * writes its request and an answer resumes its caller inside the socket's read callback, without an
 * Effect, a fiber or a scheduler turn per message. Protocols without them (the in-memory test
 * transport, plain `@effect/rpc` protocols) go through `send` / `run` as usual.
 */
export const DirectTypeId: unique symbol = Symbol.for("@foundation/core/DirectProtocol") as never

/** The client side's hooks. */
export interface DirectClient {
  /** Writes a request now (coalesced with the tick's other frames); the connection's error if it is down. */
  readonly unsafeSend: (message: FromClientEncoded) => RpcClientError | undefined
  /**
   * Installs the handler that sees every answer first, in the read callback. It returns `false` for
   * a message it leaves to `run`; such messages keep their order relative to each other.
   */
  readonly unsafeReceive: (handler: (message: FromServerEncoded) => boolean) => void
}

/** The server side's hooks. */
export interface DirectServer {
  /** Writes an answer to a client now (coalesced); dropped if the client is gone. */
  readonly unsafeSend: (clientId: number, message: FromServerEncoded) => void
  /** As `DirectClient.unsafeReceive`, for the requests of every client. */
  readonly unsafeReceive: (handler: (clientId: number, message: FromClientEncoded) => boolean) => void
}

/** The client hooks of `protocol`, if its transport has them. */
export const directClient = (protocol: RpcClient.Protocol["Type"]): DirectClient | undefined =>
  (protocol as { readonly [DirectTypeId]?: DirectClient })[DirectTypeId]

/** The server hooks of `protocol`, if its transport has them. */
export const directServer = (protocol: RpcServer.Protocol["Type"]): DirectServer | undefined =>
  (protocol as { readonly [DirectTypeId]?: DirectServer })[DirectTypeId]

/**
 * Offers each message to `handler`, and returns those it declined (in order), or `undefined` when it
 * took them all.
 */
export const offerEach = <M>(
  messages: ReadonlyArray<M>,
  handler: ((message: M) => boolean) | undefined
): ReadonlyArray<M> | undefined => {
  if (handler === undefined) return messages.length === 0 ? undefined : messages
  let declined: Array<M> | undefined
  for (const message of messages) if (!handler(message)) (declined ??= []).push(message)
  return declined
}
