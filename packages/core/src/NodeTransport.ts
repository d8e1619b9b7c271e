/**
 * How a node reaches the node endpoints of its peers. The platform packages provide it:
 * `@foundation/node` over TCP sockets, `@foundation/testing` in memory.
 */
import type * as RpcClient from "@effect/rpc/RpcClient"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { NodeAddress } from "./Node.js"

/**
 * The outcome of a raw reachability probe.
 * - `reachable`: something accepted the connection;
 * - `refused`: the host answered that nothing listens there (the process is gone);
 * - `timeout`: no answer at all (a frozen process, a partition, a lost host).
 */
export type ProbeResult = "reachable" | "refused" | "timeout"

/**
 * The client side of the node endpoint transport.
 *
 * - `makeClientProtocol(address)`: an `RpcClient.Protocol` to the peer's endpoint, the raw
 *   `@effect/rpc` protocol the node's `RpcClient.make(NodeRpcs)` runs on.
 * - `probe(address, timeout)`: a bare connect attempt, used by the failure detector to tell a dead
 *   process (refused) from an unreachable one (timeout).
 */
export class NodeTransport extends Context.Tag("@foundation/core/NodeTransport")<
  NodeTransport,
  {
    readonly makeClientProtocol: (
      address: NodeAddress
    ) => Effect.Effect<RpcClient.Protocol["Type"], never, Scope.Scope>
    readonly probe: (address: NodeAddress, timeout: Duration.DurationInput) => Effect.Effect<ProbeResult>
  }
>() {}
