import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as SocketServer from "@effect/platform/SocketServer"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type * as Net from "node:net"

/**
 * The network side of a simulated crash: every TCP server of a node registers how to drop off the
 * network at once (stop listening, destroy open connections), as the kernel does for a killed process.
 */
export interface NetworkCut {
  readonly cuts: Array<Effect.Effect<void>>
}

export const makeNetworkCut = (): NetworkCut => ({ cuts: [] })

/** The cut the servers being built register with; none outside a fault-injectable node. */
export class CurrentNetworkCut extends Context.Reference<CurrentNetworkCut>()(
  "@foundation/node/internal/CurrentNetworkCut",
  { defaultValue: (): NetworkCut | undefined => undefined }
) {}

export const cutNetwork = (cut: NetworkCut): Effect.Effect<void> => Effect.all(cut.cuts, { discard: true })

/**
 * `NodeSocketServer.make(options)`. Inside a fault-injectable node (`CurrentNetworkCut` set) its open
 * connections are tracked, so that the cut can close the listener and destroy every connection
 * without waiting for finalizers.
 */
export const make = (
  options: Net.ListenOptions
): Effect.Effect<SocketServer.SocketServer["Type"], SocketServer.SocketServerError, Scope.Scope> =>
  Effect.gen(function* () {
    const cut = yield* CurrentNetworkCut
    if (cut === undefined) return yield* NodeSocketServer.make(options)
    const listenerScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const server = yield* NodeSocketServer.make(options).pipe(Scope.extend(listenerScope))
    const connections = new Set<Net.Socket>()
    cut.cuts.push(
      Effect.gen(function* () {
        yield* Effect.forkDaemon(Scope.close(listenerScope, Exit.void))
        for (const conn of connections) conn.destroy()
        connections.clear()
      })
    )
    return SocketServer.SocketServer.of({
      address: server.address,
      run: (handler) =>
        server.run((socket) =>
          Effect.flatMap(Effect.serviceOption(NodeSocket.NetSocket), (conn) => {
            if (Option.isNone(conn)) return handler(socket)
            connections.add(conn.value)
            return Effect.ensuring(
              handler(socket),
              Effect.sync(() => connections.delete(conn.value))
            )
          })
        )
    })
  })
