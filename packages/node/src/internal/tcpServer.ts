import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as Socket from "@effect/platform/Socket"
import * as SocketServer from "@effect/platform/SocketServer"
import type * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Scope from "effect/Scope"
import * as Net from "node:net"

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

/** How long a served connection may take to flush and close once the server shuts down. */
const closeGraceMillis = 1000

const logUnhandled = <E>(cause: Cause.Cause<E>) => Effect.logDebug("socket handler failed", cause)

/**
 * A TCP `SocketServer`: `NodeSocketServer.make(options)` (each connection becomes a `Socket` through
 * `NodeSocket.fromDuplex`), with a shutdown that cannot hang. `NodeSocketServer` queues connections
 * that arrive when no handler runs (for example while the node shuts down) and never closes them, and
 * its finalizer (`server.close`) waits for every connection to end, so one late reconnect from a
 * peer kept a stopping node alive forever. Here connections that arrive after the handler stopped
 * are destroyed, and served connections get `closeGraceMillis` to flush before they are destroyed.
 * Inside a fault-injectable node (`CurrentNetworkCut`) the cut closes the listener and destroys every
 * connection at once.
 */
export const make = (
  options: Net.ListenOptions
): Effect.Effect<SocketServer.SocketServer["Type"], SocketServer.SocketServerError, Scope.Scope> =>
  Effect.gen(function* () {
    const failure = yield* Deferred.make<never, SocketServer.SocketServerError>()
    const connections = new Set<Net.Socket>()
    const pending: Array<Net.Socket> = []
    let handle: ((conn: Net.Socket) => void) | undefined
    let accepting = true

    const server = Net.createServer((conn) => {
      if (!accepting) return void conn.destroy()
      conn.setNoDelay(true)
      connections.add(conn)
      conn.once("close", () => connections.delete(conn))
      if (handle) handle(conn)
      else pending.push(conn)
    })
    server.on("error", (cause) =>
      Deferred.unsafeDone(
        failure,
        Exit.fail(new SocketServer.SocketServerError({ reason: "Unknown", cause }))
      )
    )

    const stopAccepting = () => {
      accepting = false
      for (const conn of pending.splice(0)) conn.destroy()
    }
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        stopAccepting()
        const timer = setTimeout(() => {
          for (const conn of connections) conn.destroy()
        }, closeGraceMillis)
        server.close(() => {
          clearTimeout(timer)
          resume(Effect.void)
        })
        return Effect.sync(() => clearTimeout(timer))
      })
    )
    const cut = yield* CurrentNetworkCut
    cut?.cuts.push(
      Effect.sync(() => {
        stopAccepting()
        server.close()
        for (const conn of connections) conn.destroy()
      })
    )

    yield* Effect.async<void, SocketServer.SocketServerError>((resume) => {
      const onError = (cause: Error) =>
        resume(Effect.fail(new SocketServer.SocketServerError({ reason: "Open", cause })))
      server.once("error", onError)
      server.listen(options, () => {
        server.off("error", onError)
        resume(Effect.void)
      })
    })

    const run = <R, E, _>(handler: (socket: Socket.Socket) => Effect.Effect<_, E, R>) =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const fiberSet = yield* FiberSet.make().pipe(Scope.extend(scope))
        const runFork = yield* FiberSet.runtime(fiberSet)<R>()
        const serve = (conn: Net.Socket) => {
          let error: Error | undefined
          conn.on("error", (cause) => {
            error = cause
          })
          NodeSocket.fromDuplex(
            Effect.acquireRelease(
              Effect.suspend((): Effect.Effect<Net.Socket, Socket.SocketError> => {
                if (error) return Effect.fail(new Socket.SocketGenericError({ reason: "Open", cause: error }))
                if (conn.closed)
                  return Effect.fail(new Socket.SocketCloseError({ reason: "Close", code: 1000 }))
                return Effect.succeed(conn)
              }),
              (conn) => Effect.sync(() => conn.closed || conn.destroySoon())
            )
          ).pipe(
            Effect.flatMap(handler),
            Effect.catchAllCause(logUnhandled),
            Effect.provideService(NodeSocket.NetSocket, conn),
            runFork
          )
        }
        return yield* Effect.async<never>(() => {
          handle = serve
          for (const conn of pending.splice(0)) serve(conn)
          return Effect.suspend(() => {
            handle = undefined
            stopAccepting()
            return Scope.close(scope, Exit.void)
          })
        }).pipe(Effect.raceFirst(Deferred.await(failure)))
      })

    const address = server.address()!
    return SocketServer.SocketServer.of({
      address:
        typeof address === "string"
          ? { _tag: "UnixAddress", path: address }
          : { _tag: "TcpAddress", hostname: address.address, port: address.port },
      run
    })
  })
