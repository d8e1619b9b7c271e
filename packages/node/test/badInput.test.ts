import * as SocketTransport from "../src/SocketTransport.js"
import { Node } from "@foundation/core/Node"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Net from "node:net"
import { awaitAllUp, placements, type Running, sharedSqlite, startNodes } from "./utils.js"

interface Reply {
  readonly frames: ReadonlyArray<unknown>
  readonly closedByServer: boolean
}

/** Opens a raw TCP connection, writes `bytes` (then half-closes if `end`), and reads until the server closes. */
const sendRaw = (port: number, bytes: Uint8Array, end: boolean) =>
  Effect.async<Reply>((resume) => {
    const received: Array<Buffer> = []
    let done = false
    const finish = (closedByServer: boolean) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      const data = Buffer.concat(received)
      const frames = data.length > 0 ? SocketTransport.serialization.unsafeMake().decode(data) : []
      resume(Effect.succeed({ frames, closedByServer }))
    }
    const socket = Net.connect({ host: "127.0.0.1", port }, () => {
      socket.write(bytes)
      if (end) socket.end()
    })
    socket.on("data", (chunk) => received.push(chunk))
    socket.on("error", () => undefined)
    socket.on("close", () => finish(true))
    const timer = setTimeout(() => finish(false), 3000)
  })

const encode = (value: unknown) => SocketTransport.serialization.unsafeMake().encode(value) as Uint8Array

const pseudoRandom = (length: number, seed: number) => {
  const bytes = new Uint8Array(length)
  let state = seed
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) % 2147483648
    bytes[i] = state >>> 16
  }
  return bytes
}

const validRequest = encode({
  _tag: "Request",
  id: "1",
  tag: "Ping",
  payload: { from: "x", sentAt: 0 },
  headers: []
})

const malformed: ReadonlyArray<readonly [string, Uint8Array]> = [
  ["random bytes", pseudoRandom(256, 7)],
  ["a byte that is not msgpack (0xc1)", new Uint8Array([0xc1, 0x00, 0x01])],
  ["msgpack that is not a message (a number)", encode(42)],
  ["msgpack that is not a message (nil)", new Uint8Array([0xc0])],
  ["a message with an unknown tag", encode({ _tag: "Hello" })],
  ["an Ack whose request id is not a number", encode({ _tag: "Ack", requestId: "zz" })],
  [
    "a Request whose headers are not pairs",
    encode({ _tag: "Request", id: "5", tag: "Ping", payload: {}, headers: "x" })
  ]
]

const endpoints: Array<[string, (node: Running) => number]> = [
  ["the node endpoint", (node) => node.info.address.port],
  ["the runner endpoint", (node) => node.info.runnerAddress.port]
]

describe.each(endpoints)("garbage sent to %s", (_, portOf) => {
  it.scopedLive("gets MalformedFrame and a closed connection; the node keeps serving its peers", () =>
    Effect.gen(function* () {
      const [target, peer] = yield* startNodes(2, yield* sharedSqlite)
      yield* awaitAllUp([target, peer], [target.info.id, peer.info.id])
      const port = portOf(target)

      for (const [label, bytes] of malformed) {
        const reply = yield* sendRaw(port, bytes, false)
        expect(reply.closedByServer, label).toBe(true)
        expect(reply.frames.at(-1), label).toMatchObject({
          _tag: "Defect",
          defect: { _tag: "MalformedFrame" }
        })
      }
      const truncated = yield* sendRaw(port, validRequest.subarray(0, validRequest.length - 5), true)
      expect(truncated.closedByServer).toBe(true)
      expect(truncated.frames).toEqual([])

      const pong = yield* peer.run(
        Effect.flatMap(
          Effect.flatMap(Node, (node) => node.client(target.info.id)),
          (client) => client.Ping({ from: peer.info.id, sentAt: Date.now() })
        )
      )
      expect(pong.node).toBe(target.info.id)
      const served = yield* placements(
        peer,
        Array.from({ length: 24 }, (_, i) => `user-${i + 1}`)
      )
      expect(served.some((p) => p.node === target.info.id)).toBe(true)
    }).pipe(Logger.withMinimumLogLevel(LogLevel.Error))
  )
})
