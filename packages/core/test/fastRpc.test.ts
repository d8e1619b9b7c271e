import { describe, expect, it } from "@effect/vitest"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcClient from "@effect/rpc/RpcClient"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as FastRpc from "../src/internal/fastRpc.js"

const Echo = RpcGroup.make(
  Rpc.make("Say", { payload: { text: Schema.String }, success: Schema.String }),
  Rpc.make("Lines", { success: Schema.String, stream: true })
)

/** A protocol that accepts every request and never answers. */
const silentProtocol = RpcClient.Protocol.make(() =>
  Effect.succeed({ send: () => Effect.void, supportsAck: true, supportsTransferables: false })
)

describe("the node RPC link", () => {
  it.effect("fails calls made after its scope closed with RpcClientError instead of waiting forever", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const link = yield* Scope.extend(Effect.flatMap(silentProtocol, FastRpc.makeLink), scope)
      const client = link.client(Echo)
      const waiting = yield* Effect.fork(client.Say({ text: "before" }))
      yield* Scope.close(scope, Exit.void)
      expect(yield* Effect.flip(waiting.await.pipe(Effect.flatten))).toBeInstanceOf(RpcClientError)
      expect(yield* Effect.flip(client.Say({ text: "after" }))).toBeInstanceOf(RpcClientError)
      expect(yield* Effect.flip(client.Say({ text: "after" }, { discard: true }))).toBeInstanceOf(
        RpcClientError
      )
      expect(yield* Effect.flip(Stream.runDrain(client.Lines()))).toBeInstanceOf(RpcClientError)
    })
  )
})
