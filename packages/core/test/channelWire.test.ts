import { describe, expect, it } from "@effect/vitest"
import * as Wire from "../src/internal/channelWire.js"

describe("BodyPool", () => {
  it("hands a recycled buffer out again, once, and keeps at most its limit", () => {
    const pool = Wire.makeBodyPool(256 * 1024)
    const first = pool.allocate(100_000)
    expect(first.length).toBe(100_000)
    expect(pool.owns(first)).toBe(true)
    expect(pool.owns(new Uint8Array(100_000))).toBe(false)
    pool.recycle(first)
    pool.recycle(first)
    const again = pool.allocate(90_000)
    expect(again.buffer).toBe(first.buffer)
    expect(pool.allocate(90_000).buffer).not.toBe(first.buffer)
    const kept = [pool.allocate(100_000), pool.allocate(100_000), pool.allocate(100_000)]
    for (const body of kept) pool.recycle(body)
    const reused = [pool.allocate(100_000), pool.allocate(100_000), pool.allocate(100_000)]
    // 128 KiB buffers under a 256 KiB limit: two were kept
    expect(reused.filter((body) => kept.some((k) => k.buffer === body.buffer)).length).toBe(2)
  })

  it("encodes a large byte array into the pool's body, as msgpack bin", () => {
    const pool = Wire.makeBodyPool(1024 * 1024)
    const value = new Uint8Array(70_000).fill(3)
    const body = Wire.encode(value, pool.allocate)
    expect(pool.owns(body)).toBe(true)
    const [decoded] = Wire.decodeAll(body) as [Uint8Array]
    expect(Buffer.compare(decoded, value)).toBe(0)
  })
})

describe("makeFrameWriter", () => {
  const outgoing = (seq: number, body: Uint8Array, lease?: Wire.Lease): Wire.Outgoing => ({
    topic: Wire.topicBytes("bulk"),
    seq,
    flags: 0,
    body,
    chunked: body.length > 100,
    lease
  })

  it("names the message a part belongs to, and the leased messages a frame completed", () => {
    const writer = Wire.makeFrameWriter({ maxFrameBytes: 1000, chunkSize: 100 })
    const large = outgoing(1, new Uint8Array(150), { holders: 1, spoiled: false })
    const small = outgoing(2, Wire.encode("x"))
    const queue: Wire.Queue = { queue: [large, small], head: 0, partOffset: 0 }
    const first = writer.take(queue)
    expect(first.part?.length).toBe(100)
    expect(first.partOf).toBe(large)
    expect(first.completed).toEqual([])
    const second = writer.take(queue)
    expect(second.part?.length).toBe(50)
    expect(second.partOf).toBe(large)
    expect(second.completed).toEqual([large])
    const third = writer.take(queue)
    expect(third.partOf).toBeUndefined()
    expect(third.completed).toEqual([])
    expect(third.messages).toBe(1)
  })
})
