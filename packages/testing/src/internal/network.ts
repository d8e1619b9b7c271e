import * as RpcClient from "@effect/rpc/RpcClient"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import * as RpcServer from "@effect/rpc/RpcServer"
import type { ProbeResult } from "@foundation/core/NodeTransport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Mailbox from "effect/Mailbox"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"

/**
 * One incarnation of a node's network stack. A crash kills it; a restart attaches a new one, so
 * fibers of the dead incarnation that are still unwinding can never reach the network again.
 */
export interface Host {
  readonly node: string
  alive: boolean
}

interface Packet<A> {
  readonly message: A
  readonly deliverAt: number
}

interface Endpoint {
  readonly address: string
  readonly host: Host
  readonly connections: Map<number, Connection>
  nextClientId: number
  readonly disconnects: Mailbox.Mailbox<number>
  readonly receive: (clientId: number, message: FromClientEncoded) => Effect.Effect<void>
}

interface Connection {
  readonly client: Host
  readonly endpoint: Endpoint
  readonly clientId: number
  open: boolean
  readonly toServer: Queue.Queue<Packet<FromClientEncoded>>
  readonly toClient: Queue.Queue<Packet<FromServerEncoded>>
  /** what a socket close looks like to the client: a protocol error for every request in flight */
  readonly reset: (error: RpcClientError) => Effect.Effect<void>
}

/**
 * An in-memory network shared by the nodes of one cluster.
 *
 * Addresses are `node:port` strings; the part before the last colon names the node, so links can
 * be cut or slowed by node id even while nothing listens on them.
 */
export interface Network {
  readonly attach: (node: string) => Host
  readonly serve: (
    host: Host,
    address: string
  ) => Effect.Effect<RpcServer.Protocol["Type"], never, Scope.Scope>
  readonly connect: (
    host: Host,
    address: string
  ) => Effect.Effect<RpcClient.Protocol["Type"], never, Scope.Scope>
  readonly probe: (host: Host, address: string, timeout: Duration.DurationInput) => Effect.Effect<ProbeResult>
  readonly crash: (host: Host) => Effect.Effect<void>
  readonly partition: (left: ReadonlyArray<string>, right: ReadonlyArray<string>) => void
  readonly delay: (from: string, to: string, millis: number) => void
  readonly heal: () => void
}

const nodeOf = (address: string) => address.slice(0, address.lastIndexOf(":"))

const refused = (address: string) =>
  new RpcClientError({ reason: "Protocol", message: `connect ECONNREFUSED ${address}` })

const closed = (address: string) =>
  new RpcClientError({ reason: "Protocol", message: `connection to ${address} closed` })

export const make = (): Network => {
  const endpoints = new Map<string, Endpoint>()
  const connections = new Set<Connection>()
  const blocked = new Set<string>()
  const delays = new Map<string, number>()
  const link = (from: string, to: string) => `${from}->${to}`
  const isBlocked = (from: string, to: string) => blocked.has(link(from, to))
  const delayOf = (from: string, to: string) => delays.get(link(from, to)) ?? 0

  const close = (connection: Connection, error: RpcClientError | undefined) =>
    Effect.suspend(() => {
      if (!connection.open) return Effect.void
      connection.open = false
      connections.delete(connection)
      connection.endpoint.connections.delete(connection.clientId)
      connection.endpoint.disconnects.unsafeOffer(connection.clientId)
      return Effect.zipRight(
        Effect.zipRight(Queue.shutdown(connection.toServer), Queue.shutdown(connection.toClient)),
        error && connection.client.alive ? connection.reset(error) : Effect.void
      )
    })

  // Each direction of a connection is drained by its own fiber, so a send returns at once and the
  // receiver runs on the scheduler: no synchronous recursion between nodes, FIFO per direction.
  const pump = <A>(
    connection: Connection,
    queue: Queue.Queue<Packet<A>>,
    from: Host,
    to: Host,
    deliver: (message: A) => Effect.Effect<void>
  ) =>
    Queue.take(queue).pipe(
      Effect.flatMap((packet) =>
        Effect.clockWith((clock) => {
          const wait = packet.deliverAt - clock.unsafeCurrentTimeMillis()
          return wait > 0 ? Effect.sleep(wait) : Effect.void
        }).pipe(
          Effect.zipRight(
            Effect.suspend(() =>
              connection.open && from.alive && to.alive && !isBlocked(from.node, to.node)
                ? deliver(packet.message)
                : Effect.void
            )
          ),
          Effect.catchAllCause((cause) => Effect.logWarning("in-memory delivery failed", cause))
        )
      ),
      Effect.forever,
      // a connection opens inside whatever sends first, which may be an uninterruptible region
      Effect.interruptible
    )

  const enqueue = <A>(queue: Queue.Queue<Packet<A>>, message: A, from: string, to: string) =>
    Effect.clockWith((clock) =>
      Effect.sync(() => {
        queue.unsafeOffer({ message, deliverAt: clock.unsafeCurrentTimeMillis() + delayOf(from, to) })
      })
    )

  return {
    attach: (node) => ({ node, alive: true }),

    serve: (host, address) =>
      RpcServer.Protocol.make((receive) =>
        Effect.gen(function* () {
          const existing = endpoints.get(address)
          if (existing && existing.host.alive) {
            return yield* Effect.dieMessage(`${address} is already in use by ${existing.host.node}`)
          }
          const endpoint: Endpoint = {
            address,
            host,
            connections: new Map(),
            nextClientId: 0,
            disconnects: yield* Mailbox.make<number>(),
            receive
          }
          endpoints.set(address, endpoint)
          yield* Effect.addFinalizer(() =>
            Effect.suspend(() => {
              if (endpoints.get(address) === endpoint) endpoints.delete(address)
              return Effect.forEach(
                Array.from(endpoint.connections.values()),
                (connection) => close(connection, closed(address)),
                { discard: true }
              )
            })
          )
          return {
            disconnects: endpoint.disconnects,
            send: (clientId, response) =>
              Effect.suspend(() => {
                const connection = endpoint.connections.get(clientId)
                if (!connection || !connection.open || !host.alive) return Effect.void
                return enqueue(connection.toClient, response, host.node, connection.client.node)
              }),
            end: () => Effect.void,
            clientIds: Effect.sync(() => new Set(endpoint.connections.keys())),
            initialMessage: Effect.succeedNone,
            supportsAck: true,
            supportsTransferables: false,
            supportsSpanPropagation: true
          }
        })
      ),

    connect: (host, address) =>
      RpcClient.Protocol.make((writeResponse) =>
        Effect.gen(function* () {
          const scope = yield* Effect.scope
          const connecting = Effect.unsafeMakeSemaphore(1)
          let current: Connection | undefined

          const open = (endpoint: Endpoint) =>
            Effect.gen(function* () {
              if (current) yield* close(current, undefined)
              const connection: Connection = {
                client: host,
                endpoint,
                clientId: endpoint.nextClientId++,
                open: true,
                toServer: yield* Queue.unbounded<Packet<FromClientEncoded>>(),
                toClient: yield* Queue.unbounded<Packet<FromServerEncoded>>(),
                reset: (error) =>
                  Effect.asVoid(Effect.forkIn(writeResponse({ _tag: "ClientProtocolError", error }), scope))
              }
              endpoint.connections.set(connection.clientId, connection)
              connections.add(connection)
              yield* Effect.forkIn(
                pump(connection, connection.toServer, host, endpoint.host, (message) =>
                  endpoint.receive(connection.clientId, message)
                ),
                scope
              )
              yield* Effect.forkIn(
                pump(connection, connection.toClient, endpoint.host, host, writeResponse),
                scope
              )
              current = connection
              return connection
            })

          yield* Effect.addFinalizer(() => (current ? close(current, undefined) : Effect.void))

          return {
            // The target is resolved on every send: the engine keeps one client per runner address
            // for minutes, across crashes and restarts of the node behind it.
            send: (request) =>
              Effect.suspend(() => {
                if (!host.alive) return Effect.fail(refused(address))
                const target = nodeOf(address)
                if (isBlocked(host.node, target)) return Effect.void
                const endpoint = endpoints.get(address)
                if (!endpoint || !endpoint.host.alive) return Effect.fail(refused(address))
                const connection = connecting.withPermits(1)(
                  Effect.suspend(() =>
                    current && current.open && current.endpoint === endpoint
                      ? Effect.succeed(current)
                      : open(endpoint)
                  )
                )
                return Effect.flatMap(connection, (connection) =>
                  enqueue(connection.toServer, request, host.node, target)
                )
              }),
            supportsAck: true,
            supportsTransferables: false
          }
        })
      ),

    probe: (host, address, timeout) =>
      Effect.suspend((): Effect.Effect<ProbeResult> => {
        const target = nodeOf(address)
        const timeoutMillis = Duration.toMillis(timeout)
        if (isBlocked(host.node, target) || isBlocked(target, host.node)) {
          return Effect.as(Effect.sleep(timeoutMillis), "timeout")
        }
        const endpoint = endpoints.get(address)
        if (!host.alive || !endpoint || !endpoint.host.alive) return Effect.succeed("refused")
        const roundTrip = delayOf(host.node, target) + delayOf(target, host.node)
        if (roundTrip >= timeoutMillis) return Effect.as(Effect.sleep(timeoutMillis), "timeout")
        return roundTrip > 0 ? Effect.as(Effect.sleep(roundTrip), "reachable") : Effect.succeed("reachable")
      }),

    crash: (host) =>
      Effect.suspend(() => {
        host.alive = false
        for (const [address, endpoint] of endpoints) {
          if (endpoint.host === host) endpoints.delete(address)
        }
        const affected = Array.from(connections).filter(
          (connection) => connection.client === host || connection.endpoint.host === host
        )
        return Effect.forEach(
          affected,
          (connection) => close(connection, closed(connection.endpoint.address)),
          {
            discard: true
          }
        )
      }),

    partition: (left, right) => {
      for (const a of left) {
        for (const b of right) {
          blocked.add(link(a, b))
          blocked.add(link(b, a))
        }
      }
    },

    delay: (from, to, millis) => {
      if (millis > 0) delays.set(link(from, to), millis)
      else delays.delete(link(from, to))
    },

    heal: () => {
      blocked.clear()
      delays.clear()
    }
  }
}
