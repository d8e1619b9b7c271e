/**
 * TCP sockets for both endpoints of a node: Foundation's node endpoint (`NodeRpcs`) and the engine's
 * runner endpoint. Frames are msgpack without records (`layerSerialization`).
 *
 * What it is made of, in raw calls:
 * ```ts
 * NodeSocketServer.layer({ host, port })                       // the TCP listener (+ bounded close)
 * RpcServer.layerProtocolSocketServer                          // + frame validation, coalesced writes
 * RpcClient.makeProtocolSocket({ retryTransientErrors: false }) // replaced: a raw net.Socket protocol
 * NodeClusterSocket.layerClientProtocol                        // the runner client, same protocol
 * ```
 * Each differs from the engine's piece where noted on the export below. The main difference is
 * speed: the engine's socket protocols wait for the kernel's write callback on every frame (an async
 * suspension per call); here the frames written in one event-loop turn leave in one `socket.write`. Addresses
 * are always passed explicitly: nothing here reads `HOST` or `PORT`.
 */
import * as Runners from "@effect/cluster/Runners"
import * as SocketServer from "@effect/platform/SocketServer"
import type * as RpcClient from "@effect/rpc/RpcClient"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as RpcServer from "@effect/rpc/RpcServer"
import type { NodeAddress } from "@foundation/core/Node"
import { NodeTransport, type ProbeResult } from "@foundation/core/NodeTransport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Net from "node:net"
import * as ClientProtocol from "./internal/clientProtocol.js"
import * as MsgpackFrames from "./internal/msgpackFrames.js"
import * as ServerProtocol from "./internal/serverProtocol.js"
import * as TcpServer from "./internal/tcpServer.js"

/**
 * An endpoint could not listen on its address (the port is taken, the host is not local, ...).
 * Pick another port, or free this one.
 */
export class ListenError extends Schema.TaggedError<ListenError>()("ListenError", {
  endpoint: Schema.Literal("node", "runner"),
  address: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `The ${this.endpoint} endpoint could not listen on ${this.address}: ${this.reason}`
  }
}

/**
 * The serialization of both endpoints: msgpack (framed, so safe on raw TCP) without msgpackr's
 * record extension (`RpcSerialization.makeMsgPack({ useRecords: false, mapsAsObjects: true })`). The
 * engine's `RpcSerialization.msgPack` defines a record in every frame, since no structures are shared
 * between frames, which costs twice the packing and unpacking time for our small messages. The
 * endpoints' protocols pack frames in place and copy them into their write buffer at once.
 */
export const serialization: RpcSerialization.RpcSerialization["Type"] = MsgpackFrames.serialization

/** `serialization` as a layer. */
export const layerSerialization: Layer.Layer<RpcSerialization.RpcSerialization> = Layer.succeed(
  RpcSerialization.RpcSerialization,
  serialization
)

/**
 * The server protocol on the `SocketServer` in context: `RpcServer.makeProtocolSocketServer`, plus a
 * check of every decoded frame. Bytes that are not msgpack, or msgpack that is not an RPC client
 * message, are answered with a `Defect` frame carrying `NodeError.MalformedFrame`, and that connection
 * is closed; every other connection keeps being served.
 */
export const layerServerProtocol: Layer.Layer<
  RpcServer.Protocol,
  never,
  SocketServer.SocketServer | RpcSerialization.RpcSerialization
> = Layer.scoped(RpcServer.Protocol, ServerProtocol.make)

/**
 * An endpoint's `RpcServer.Protocol` listening on `host:port`: a TCP `SocketServer` +
 * `layerServerProtocol` + msgpack. Used for the node endpoint and for the runner endpoint.
 *
 * The `SocketServer` is `NodeSocketServer.make` with a close that cannot hang: `NodeSocketServer`
 * queues connections that arrive while its handler stops and never closes them, and its close waits
 * for every connection, so one peer reconnecting at the wrong moment kept a stopping node alive
 * forever. Here late connections are destroyed and served ones get 1 s to flush before they are.
 * Each call is a fresh protocol (`Layer.fresh`): layers are memoized by reference, so two endpoints
 * built from one shared protocol layer would share one protocol.
 */
export const layerServer = (
  endpoint: "node" | "runner",
  options: { readonly host: string; readonly port: number }
): Layer.Layer<RpcServer.Protocol, ListenError> =>
  Layer.fresh(layerServerProtocol).pipe(
    Layer.provide(
      Layer.scoped(
        SocketServer.SocketServer,
        TcpServer.make({ host: options.host, port: options.port }).pipe(
          Effect.mapError(
            (error) =>
              new ListenError({
                endpoint,
                address: `${options.host}:${options.port}`,
                reason: error.cause instanceof Error ? error.cause.message : String(error.cause)
              })
          )
        )
      )
    ),
    Layer.provide(layerSerialization)
  )

/**
 * An `RpcClient.Protocol` to a peer's node endpoint: what `RpcClient.makeProtocolSocket` over
 * `NodeSocket.makeNet({ host, port })` does, on a raw `net.Socket` with writes coalesced per event-loop turn,
 * msgpack (`serialization`). Connection failures are reported to callers at once
 * (`retryTransientErrors: false`, so the failure detector hears about a dead peer), the socket
 * reconnects every 100 ms, and a write to a peer that just died fails the call with `RpcClientError`
 * (the engine would make it a defect).
 */
export const makeClientProtocol = (
  address: NodeAddress
): Effect.Effect<RpcClient.Protocol["Type"], never, Scope.Scope> =>
  ClientProtocol.make(address, {
    openTimeout: 1000,
    serialization,
    retryTransientErrors: false,
    retrySchedule: Schedule.spaced(Duration.millis(100))
  })

/**
 * A bare `net.connect` to `address`, closed as soon as it opens: `refused` on ECONNREFUSED (nothing
 * listens: the process is gone), `timeout` when nothing answers within `timeout` (or the host or
 * network is unreachable), `reachable` otherwise.
 */
export const probe = (
  address: { readonly host: string; readonly port: number },
  timeout: Duration.DurationInput
): Effect.Effect<ProbeResult> =>
  Effect.async<ProbeResult>((resume) => {
    const socket = Net.connect({ host: address.host, port: address.port })
    const done = (result: ProbeResult) => {
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed(result))
    }
    const timer = setTimeout(() => done("timeout"), Duration.toMillis(timeout))
    socket.once("connect", () => done("reachable"))
    socket.once("error", (error: NodeJS.ErrnoException) =>
      done(
        error.code === "ECONNREFUSED"
          ? "refused"
          : error.code === "EHOSTUNREACH" || error.code === "ENETUNREACH" || error.code === "ETIMEDOUT"
            ? "timeout"
            : "reachable"
      )
    )
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })

/** Core's `NodeTransport` over TCP: `makeClientProtocol` and `probe` above. */
export const layerTransport: Layer.Layer<NodeTransport> = Layer.succeed(
  NodeTransport,
  NodeTransport.of({ makeClientProtocol, probe })
)

/**
 * The engine's client protocol to other runners: what `NodeClusterSocket.layerClientProtocol` does
 * (`RpcClient.makeProtocolSocket()` over `NodeSocket.makeNet`, 1 s open timeout, msgpack), on the
 * same raw socket protocol as `makeClientProtocol`, with these differences:
 * - writes are coalesced per event-loop turn, and a connection that fails (a runner that just died) fails its
 *   requests with `RpcClientError` (the engine retries it as `RunnerUnavailable`) instead of a defect
 *   that the cluster would hand to the caller as its reply;
 * - every client is also closed when this layer closes. The engine caches one client per runner in
 *   an `RcMap`, whose concurrent first lookups of one address each create a client and orphan all
 *   but one; an orphan is never closed, and its `RpcClient` fiber would keep the process alive.
 */
export const layerRunnerClient: Layer.Layer<Runners.RpcClientProtocol> = Layer.scoped(
  Runners.RpcClientProtocol,
  Effect.map(
    Effect.scope,
    (layerScope) => (address) =>
      Effect.gen(function* () {
        // the scope the engine's RcMap opened for this client (a closeable scope at runtime)
        const client = (yield* Effect.scope) as Scope.CloseableScope
        const link = yield* Scope.fork(layerScope, ExecutionStrategy.sequential)
        yield* Scope.addFinalizer(link, Scope.close(client, Exit.void))
        yield* Scope.addFinalizer(client, Scope.close(link, Exit.void))
        return yield* ClientProtocol.make(address, { openTimeout: 1000, serialization })
      })
  )
)

/**
 * Asks the OS for `count` distinct free TCP ports on `host`: listens on port 0 that many times at
 * once, reads the ports, closes. Another process may take a port before you bind it; fine for tests,
 * demos and local clusters.
 */
export const freePorts = (count: number, host = "127.0.0.1"): Effect.Effect<ReadonlyArray<number>> =>
  Effect.acquireUseRelease(
    Effect.forEach(Array.from({ length: count }), () =>
      Effect.async<Net.Server>((resume) => {
        const server = Net.createServer()
        server.once("error", (error) => resume(Effect.die(error)))
        server.listen({ host, port: 0 }, () => resume(Effect.succeed(server)))
      })
    ),
    (servers) => Effect.succeed(servers.map((server) => (server.address() as Net.AddressInfo).port)),
    (servers) =>
      Effect.forEach(
        servers,
        (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void))),
        { discard: true }
      )
  )
