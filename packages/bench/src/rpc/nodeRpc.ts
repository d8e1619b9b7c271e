/**
 * The node-to-node call measured as `node_rpc_*`. Kept in one function so the benchmark follows the
 * node RPC API when it changes.
 */
import * as Node from "@foundation/core/Node"
import * as Effect from "effect/Effect"

/**
 * Resolves the typed client of the peer `to` once (`Node.client`), then returns the call the load
 * repeats: `NodeRpcs.Ping({ from, sentAt })`.
 */
export const nodeRpcCall = (from: Node.NodeId, to: Node.NodeId) =>
  Effect.map(
    Effect.flatMap(Node.Node, (node) => node.client(to)),
    (client) => Effect.suspend(() => client.Ping({ from, sentAt: Date.now() }))
  )
