import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as Socket from "@effect/platform/Socket"
import * as RpcClient from "@effect/rpc/RpcClient"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as Effect from "effect/Effect"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"

/**
 * `RpcClient.makeProtocolSocket(options)` over `NodeSocket.makeNet({ host, port, openTimeout })`,
 * msgpack. One change: the engine turns a failed socket write (EPIPE when the peer has just died)
 * into a defect, which the cluster hands to the caller as its reply; here it fails that send with
 * `RpcClientError`, which the cluster treats as `RunnerUnavailable` and retries.
 */
export const make = (
  address: { readonly host: string; readonly port: number },
  options: {
    readonly openTimeout: number
    readonly retryTransientErrors?: boolean | undefined
    readonly retrySchedule?: Schedule.Schedule<unknown, Socket.SocketError> | undefined
  }
): Effect.Effect<RpcClient.Protocol["Type"], never, Scope.Scope> =>
  NodeSocket.makeNet({ host: address.host, port: address.port, openTimeout: options.openTimeout }).pipe(
    Effect.orDie,
    Effect.flatMap((socket) =>
      RpcClient.makeProtocolSocket({
        retryTransientErrors: options.retryTransientErrors,
        retrySchedule: options.retrySchedule
      }).pipe(
        Effect.provideService(Socket.Socket, socket),
        Effect.provideService(RpcSerialization.RpcSerialization, RpcSerialization.msgPack)
      )
    ),
    Effect.map((protocol) => ({
      ...protocol,
      send: (request, transferables) =>
        protocol.send(request, transferables).pipe(
          Effect.catchAllDefect((defect) =>
            Socket.isSocketError(defect)
              ? Effect.fail(
                  new RpcClientError({
                    reason: "Protocol",
                    message: "Error writing to the socket",
                    cause: defect
                  })
                )
              : Effect.die(defect)
          )
        )
    }))
  )
