import { describe } from "@effect/vitest"
import * as Node from "@foundation/core/Node"
import * as Effect from "effect/Effect"
import { TestCluster } from "@foundation/testing"
import { BankLive, nodeRpcContract } from "./nodeRpcContract.js"

describe("node RPC (the fast path) on the in-memory network", () => {
  nodeRpcContract(
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 2, layer: BankLive })
      yield* cluster.awaitConverged()
      return {
        clientFor: (group, from, options) =>
          Effect.orDie(
            cluster.on(
              from,
              Effect.flatMap(Node.Node, (node) =>
                node.clientFor(group, options)(Node.nodeId(from === "node-1" ? "node-2" : "node-1"))
              )
            )
          ),
        crashSecond: Effect.orDie(cluster.crash("node-2"))
      }
    })
  )
})
