import { describe } from "@effect/vitest"
import * as Node from "@foundation/core/Node"
import * as Effect from "effect/Effect"
import * as FoundationNode from "../src/FoundationNode.js"
import * as SocketTransport from "../src/SocketTransport.js"
import { BankLive, nodeRpcContract } from "../../testing/test/nodeRpcContract.js"
import { awaitAllUp, sharedSqlite } from "./utils.js"

describe("node RPC (the fast path) over sockets", () => {
  nodeRpcContract(
    Effect.gen(function* () {
      const sql = yield* sharedSqlite
      const ports = yield* SocketTransport.freePorts(4)
      const nodes = yield* Effect.forEach(
        [0, 1],
        (i) =>
          FoundationNode.start(
            { id: `node-${i + 1}`, port: ports[i * 2], runnerPort: ports[i * 2 + 1], storage: sql },
            BankLive
          ),
        { concurrency: "unbounded" }
      )
      yield* awaitAllUp(nodes, ["node-1", "node-2"])
      return {
        clientFor: (group, from, options) => {
          const [caller, callee] = from === "node-1" ? nodes : [nodes[1]!, nodes[0]!]
          return Effect.orDie(
            caller!.run(Effect.flatMap(Node.Node, (node) => node.clientFor(group, options)(callee!.info.id)))
          )
        },
        crashSecond: nodes[1]!.crash
      }
    })
  )
})
