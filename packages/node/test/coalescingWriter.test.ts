/**
 * The socket transport packs frames in place (`packTransient`) and its coalescing writer copies them
 * at once into a buffer it reuses after the socket has written it: no new buffer per frame or per
 * flush, and bytes the peer's ordinary parser reads.
 */
import type { FromClientEncoded } from "@effect/rpc/RpcMessage"
import { describe, expect, it } from "@effect/vitest"
import type * as Net from "node:net"
import { earlyFlushFrames, makeCoalescingWriter } from "../src/internal/coalescingWriter.js"
import { packTransient, serialization } from "../src/internal/msgpackFrames.js"

const request = (id: string, bytes: Uint8Array): FromClientEncoded => ({
  _tag: "Request",
  id,
  tag: "Deposit",
  payload: { note: `deposit ${id}`, bytes },
  headers: [["x-trace", "on"]]
})

/** The value with byte arrays as plain arrays: msgpack decodes a `bin` as a `Buffer`. */
const plain = (value: unknown): unknown =>
  value instanceof Uint8Array
    ? Array.from(value)
    : Array.isArray(value)
      ? value.map(plain)
      : typeof value === "object" && value !== null
        ? Object.fromEntries(Object.entries(value).map(([key, field]) => [key, plain(field)]))
        : value

/** A socket that records what is written (a copy, and the buffer); `done` completes the writes so far. */
const recordingSocket = () => {
  const writes: Array<Uint8Array> = []
  const buffers: Array<ArrayBufferLike> = []
  let callbacks: Array<() => void> = []
  const socket = {
    write: (bytes: Uint8Array, callback?: () => void) => {
      writes.push(Uint8Array.from(bytes))
      buffers.push(bytes.buffer)
      if (callback) callbacks.push(callback)
      return true
    }
  } as unknown as Net.Socket
  const done = () => {
    const completed = callbacks
    callbacks = []
    for (const callback of completed) callback()
  }
  return { socket, writes, buffers, done }
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve))

describe("packTransient", () => {
  it("writes the serialization's bytes, in place: the next pack reuses them", () => {
    const first = request("1", new Uint8Array(100_000).fill(1))
    const expected = Uint8Array.from(serialization.unsafeMake().encode(first) as Uint8Array)
    const packed = packTransient(first)
    expect(Buffer.compare(packed, expected)).toBe(0)
    const again = packTransient(request("2", new Uint8Array(10).fill(2)))
    expect(again.buffer).toBe(packed.buffer)
    expect(again.byteOffset).toBe(packed.byteOffset)
  })
})

describe("makeCoalescingWriter", () => {
  it("copies frames when written, so frames packed in place all arrive, in one write", async () => {
    const { socket, writes } = recordingSocket()
    const writer = makeCoalescingWriter()
    writer.attach(socket)
    const messages = [
      request("1", new Uint8Array(70_000).fill(1)),
      request("2", Uint8Array.from([2])),
      request("3", new Uint8Array(200_000).fill(3))
    ]
    for (const message of messages) writer.write(packTransient(message))
    await nextTurn()
    expect(writes.length).toBe(1)
    expect(plain(serialization.unsafeMake().decode(writes[0]!))).toEqual(plain(messages))
  })

  it("reuses a flushed buffer only once the socket has written it", async () => {
    const { socket, writes, buffers, done } = recordingSocket()
    const writer = makeCoalescingWriter()
    writer.attach(socket)
    writer.write(Uint8Array.from([1]))
    await nextTurn()
    writer.write(Uint8Array.from([2]))
    await nextTurn()
    expect(buffers[1]).not.toBe(buffers[0])
    done()
    writer.write(Uint8Array.from([3]))
    await nextTurn()
    expect(writes.map((bytes) => Array.from(bytes))).toEqual([[1], [2], [3]])
    expect([buffers[0], buffers[1]]).toContain(buffers[2])
  })

  it("writes every earlyFlushFrames frames at once, the rest at the end of the turn", async () => {
    const { socket, writes } = recordingSocket()
    const writer = makeCoalescingWriter()
    writer.attach(socket)
    for (let i = 0; i < earlyFlushFrames * 2 + 3; i++) writer.write(Uint8Array.from([i % 256]))
    expect(writes.map((bytes) => bytes.length)).toEqual([earlyFlushFrames, earlyFlushFrames])
    await nextTurn()
    expect(writes.map((bytes) => bytes.length)).toEqual([earlyFlushFrames, earlyFlushFrames, 3])
    expect(Array.from(Buffer.concat(writes))).toEqual(
      Array.from({ length: earlyFlushFrames * 2 + 3 }, (_, i) => i % 256)
    )
  })

  it("drops what is pending on clear, and waits for a socket before writing", async () => {
    const { socket, writes } = recordingSocket()
    const writer = makeCoalescingWriter()
    writer.write(Uint8Array.from([1]))
    writer.clear()
    writer.write(Uint8Array.from([2]))
    await nextTurn()
    expect(writes).toEqual([])
    writer.attach(socket)
    await nextTurn()
    expect(writes.map((bytes) => Array.from(bytes))).toEqual([[2]])
  })
})
