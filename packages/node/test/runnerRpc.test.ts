import { describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FoundationNode from "../src/FoundationNode.js"
import * as SocketTransport from "../src/SocketTransport.js"
import { entityCallsAcrossNodes, RemoteLive } from "../../testing/test/runnerRpcContract.js"
import { awaitAllUp, sharedSqlite } from "./utils.js"

describe("entity calls between nodes over RunnerRpc, on sockets", () => {
  it.scopedLive("carry typed errors, streamed replies and interruption to the entity's node and back", () =>
    Effect.gen(function* () {
      const sql = yield* sharedSqlite
      const ports = yield* SocketTransport.freePorts(4)
      const [first, second] = yield* Effect.forEach(
        [0, 1],
        (i) =>
          FoundationNode.start(
            { id: `node-${i + 1}`, port: ports[i * 2], runnerPort: ports[i * 2 + 1], storage: sql },
            RemoteLive
          ),
        { concurrency: "unbounded" }
      )
      yield* awaitAllUp([first!, second!], ["node-1", "node-2"])
      yield* entityCallsAcrossNodes((node, effect) => (node === "node-1" ? first! : second!).run(effect))
    })
  )
})
