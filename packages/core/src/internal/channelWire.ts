import * as Effect from "effect/Effect"
import { Packr, Unpackr } from "msgpackr"

/**
 * The bytes of Channels on the wire. A delivery frame is a run of MessagePack values (the format of
 * the transport itself, standard msgpack without records, so the encoded size is the analog of
 * `:erlang.term_to_binary`). It is a sequence of runs, each a header `[topic, seq, flags, count]`
 * followed by:
 *
 * - plain messages (`flags` 0): `count` bodies, the msgpack values of messages `seq` .. `seq + count
 *   - 1` (a publisher's consecutive messages on a topic share one header);
 * - a compressed message (`flags` has a compression bit, `count` 1): a bin of the compressed msgpack
 *   bytes of the message;
 * - a chunked message (`flags` has `chunked`, `count` the size of its body in bytes, the msgpack
 *   bytes or the compressed bytes) ends its frame. Its body travels in parts of `chunkSize`, one
 *   per frame, each outside the frame's bytes: the `part` of the `Deliver` call, a view of the
 *   queued body that the transport writes to the socket without a copy into the frame. A frame
 *   carrying a later part has no bytes of its own, or whole messages before it. The frames of one
 *   lane from one publisher are processed in order, so the parts of a message are contiguous, and
 *   the receiver copies each into place in a buffer of the announced size as it arrives.
 *
 * A message is encoded once (`encode`); frames are written per peer straight from the queued bodies.
 */

export const flags = {
  deflate: 1,
  gzip: 2,
  chunked: 4
} as const

export type Compression = "deflate" | "gzip"

// the transport's format, `RpcSerialization.makeMsgPack({ useRecords: false })`, without its framing state
const packr = new Packr({ useRecords: false })
const unpackr = new Unpackr({ useRecords: false })

/** A byte array at least this large is encoded by hand (see `encode`). */
const largeBinary = 64 * 1024

/**
 * The msgpack bytes of a value; throws if it cannot be encoded.
 *
 * A large byte array (bulk data) is written as a msgpack `bin` (the same bytes) into a `Uint8Array`
 * of its exact size from `allocate` (a `BodyPool`'s, say), without msgpackr: msgpackr packs every
 * value of the process (the transport's frames too) into one shared buffer that it replaces, when
 * full, with a `Buffer.allocUnsafeSlow` of four times the value that did not fit. A flood of 1 MiB
 * messages allocated 290 MB of those in 4 s, and such allocations force full, non-incremental GCs
 * (see docs/channels.md).
 */
export const encode = (
  value: unknown,
  allocate: (size: number) => Uint8Array = (size) => new Uint8Array(size)
): Uint8Array => {
  if (value instanceof Uint8Array && value.length >= largeBinary) {
    const bytes = allocate(5 + value.length)
    bytes[0] = 0xc6
    new DataView(bytes.buffer, bytes.byteOffset).setUint32(1, value.length)
    bytes.set(value, 5)
    return bytes
  }
  return packr.pack(value) as Uint8Array
}

/**
 * Buffers for the bodies of large messages, used again once a message is no longer needed: a
 * flood of bulk messages then allocates no new memory outside the heap, whose growth forces full,
 * stop-the-world GCs (a 1 MiB copy per message caused two or three per second on the sender, each
 * delaying its urgent frames by up to 15 ms).
 */
export interface BodyPool {
  /** a body of `size` bytes: a view of a buffer of the pool */
  readonly allocate: (size: number) => Uint8Array
  /** whether `body` came from `allocate` */
  readonly owns: (body: Uint8Array) => boolean
  /** gives a body's buffer back: nothing may read or write the body any more */
  readonly recycle: (body: Uint8Array) => void
}

/** A `BodyPool` keeping at most `maxRetainedBytes` of free buffers. */
export const makeBodyPool = (maxRetainedBytes: number): BodyPool => {
  const owned = new WeakSet<ArrayBufferLike>()
  const free = new Map<number, Array<ArrayBuffer>>()
  const freeSet = new Set<ArrayBufferLike>()
  let retained = 0
  return {
    allocate: (size) => {
      const capacity = 2 ** Math.ceil(Math.log2(Math.max(size, largeBinary)))
      const buffer = free.get(capacity)?.pop()
      if (buffer !== undefined) {
        freeSet.delete(buffer)
        retained -= capacity
        return new Uint8Array(buffer, 0, size)
      }
      const fresh = new ArrayBuffer(capacity)
      owned.add(fresh)
      return new Uint8Array(fresh, 0, size)
    },
    owns: (body) => owned.has(body.buffer),
    recycle: (body) => {
      const buffer = body.buffer as ArrayBuffer
      if (!owned.has(buffer) || freeSet.has(buffer)) return
      if (retained + buffer.byteLength > maxRetainedBytes) return
      let list = free.get(buffer.byteLength)
      if (list === undefined) free.set(buffer.byteLength, (list = []))
      list.push(buffer)
      freeSet.add(buffer)
      retained += buffer.byteLength
    }
  }
}

/**
 * Who still needs the body of a message from a `BodyPool`: one holder per queue it waits in and
 * per send of one of its parts under way. The body goes back to the pool when the last holder lets
 * go, unless something went wrong on the way (a send failed or timed out, a queue was dropped):
 * then a peer may still read it, and it is left to the garbage collector.
 */
export interface Lease {
  holders: number
  spoiled: boolean
}

/** Every msgpack value in `bytes` (a whole frame or message: an incomplete one throws). */
export const decodeAll = (bytes: Uint8Array): ReadonlyArray<unknown> => unpackr.unpackMultiple(bytes)

const topicCache = new Map<string, Uint8Array>()

/** A topic's msgpack string, encoded once. */
export const topicBytes = (topic: string): Uint8Array => {
  let bytes = topicCache.get(topic)
  if (bytes === undefined) {
    bytes = Uint8Array.from(encode(topic))
    if (topicCache.size < 10_000) topicCache.set(topic, bytes)
  }
  return bytes
}

/** One message queued for sending: the same object in every subscribing node's queue. */
export interface Outgoing {
  readonly topic: Uint8Array
  readonly seq: number
  /** compression bits */
  readonly flags: number
  /** the msgpack bytes of the message, or its compressed bytes */
  readonly body: Uint8Array
  /** the body travels in parts */
  readonly chunked: boolean
  /** set when the body is from a `BodyPool` */
  readonly lease: Lease | undefined
}

/** A header is written with fixed-width numbers, so a run's count can be patched when it closes. */
const headerSize = (topic: Uint8Array) => 1 + topic.length + 9 + 1 + 5

const noMessages: ReadonlyArray<Outgoing> = []

/** What a frame writer took from a queue. */
export interface Taken {
  readonly frame: Uint8Array
  /** the next part of the chunked message the frame ends with, a view of its body */
  readonly part: Uint8Array | undefined
  /** messages completed (a chunked message counts in the frame carrying its last part) */
  readonly messages: number
  /** body bytes taken */
  readonly bytes: number
  /** the message `part` belongs to */
  readonly partOf: Outgoing | undefined
  /** the messages with a lease that this frame completed (they left the queue) */
  readonly completed: ReadonlyArray<Outgoing>
}

/** A per-peer queue read by `FrameWriter.take`. */
export interface Queue {
  /** slots before `head` are `undefined`: a sent message is not kept alive by its queue */
  queue: Array<Outgoing | undefined>
  head: number
  /** body bytes of the head message already sent (a chunked message in progress) */
  partOffset: number
}

/**
 * Writes frames straight into buffers of their exact size: a first pass over the queue measures the
 * frame, the second writes it (one copy of every body per peer).
 */
export const makeFrameWriter = (options: { readonly maxFrameBytes: number; readonly chunkSize: number }) => {
  // undefined during the measuring pass
  let target: Uint8Array | undefined
  let view: DataView | undefined
  let pos = 0

  /** Writes a header; returns the offset of its count, patched when its run closes. */
  const writeHeader = (topic: Uint8Array, seq: number, flagBits: number, count: number) => {
    const at = pos
    pos += headerSize(topic)
    if (target === undefined) return at + headerSize(topic) - 4
    let offset = at
    target[offset++] = 0x94
    target.set(topic, offset)
    offset += topic.length
    // float64 keeps every sequence number exact up to 2^53 and decodes as a number everywhere
    target[offset] = 0xcb
    view!.setFloat64(offset + 1, seq)
    offset += 9
    target[offset++] = flagBits
    target[offset] = 0xce
    view!.setUint32(offset + 1, count)
    return offset + 1
  }

  const writeBin = (bytes: Uint8Array) => {
    if (target !== undefined) {
      target[pos] = 0xc6
      view!.setUint32(pos + 1, bytes.length)
      target.set(bytes, pos + 5)
    }
    pos += 5 + bytes.length
  }

  const writeRaw = (bytes: Uint8Array) => {
    if (target !== undefined) target.set(bytes, pos)
    pos += bytes.length
  }

  /** Walks whole messages (and parts) from the head of `q` until the frame is `maxFrameBytes`. */
  const walk = (q: Queue) => {
    pos = 0
    let messages = 0
    let bytes = 0
    let runCountAt = -1
    let runCount = 0
    let runTopic: Uint8Array | undefined
    let runNextSeq = 0
    const closeRun = () => {
      if (runCountAt >= 0 && view !== undefined) view.setUint32(runCountAt, runCount)
      runCountAt = -1
      runTopic = undefined
    }
    let part: Uint8Array | undefined
    let partOf: Outgoing | undefined
    const fits = (size: number) => pos === 0 || pos + size <= options.maxFrameBytes
    while (q.head < q.queue.length) {
      const message = q.queue[q.head]!
      if (message.chunked) {
        // the part is not copied into the frame: it travels as the frame's `part`, one per frame
        const body = message.body
        const size = Math.min(options.chunkSize, body.length - q.partOffset)
        if (!fits((q.partOffset === 0 ? headerSize(message.topic) : 0) + size)) break
        closeRun()
        if (q.partOffset === 0)
          writeHeader(message.topic, message.seq, message.flags | flags.chunked, body.length)
        part = body.subarray(q.partOffset, q.partOffset + size)
        partOf = message
        q.partOffset += size
        bytes += size
        if (q.partOffset === body.length) {
          q.partOffset = 0
          q.head++
          messages++
        }
        break
      }
      if (message.flags !== 0) {
        closeRun()
        if (!fits(headerSize(message.topic) + 5 + message.body.length)) break
        writeHeader(message.topic, message.seq, message.flags, 1)
        writeBin(message.body)
      } else if (runTopic === message.topic && message.seq === runNextSeq) {
        if (!fits(message.body.length)) break
        writeRaw(message.body)
        runCount++
        runNextSeq++
      } else {
        closeRun()
        if (!fits(headerSize(message.topic) + message.body.length)) break
        runCountAt = writeHeader(message.topic, message.seq, 0, 0)
        runTopic = message.topic
        runCount = 1
        runNextSeq = message.seq + 1
        writeRaw(message.body)
      }
      bytes += message.body.length
      q.head++
      messages++
    }
    closeRun()
    return { messages, bytes, part, partOf }
  }

  /** Takes the next frame from the head of `q` and releases the messages it completed. */
  const take = (q: Queue): Taken => {
    const head = q.head
    const partOffset = q.partOffset
    target = undefined
    view = undefined
    walk(q)
    q.head = head
    q.partOffset = partOffset
    const frame = new Uint8Array(pos)
    target = frame
    view = new DataView(frame.buffer)
    const taken = walk(q)
    target = undefined
    view = undefined
    let completed: Array<Outgoing> | undefined
    for (let index = head; index < q.head; index++) {
      const message = q.queue[index]!
      if (message.lease !== undefined) (completed ??= []).push(message)
    }
    q.queue.fill(undefined, head, q.head)
    return { frame, ...taken, completed: completed ?? noMessages }
  }

  return { take }
}

/** Joins byte arrays. */
export const join = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  if (parts.length === 1) return parts[0]
  let size = 0
  for (const part of parts) size += part.length
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const part of parts) {
    bytes.set(part, offset)
    offset += part.length
  }
  return bytes
}

const transform = (bytes: Uint8Array, stream: CompressionStream | DecompressionStream) =>
  Effect.tryPromise(async () => {
    const writer = stream.writable.getWriter()
    // not awaited: a large input only drains while the output is read
    writer.write(bytes).catch(() => undefined)
    writer.close().catch(() => undefined)
    const reader = stream.readable.getReader()
    const chunks: Array<Uint8Array> = []
    while (true) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(value)
    }
    return join(chunks)
  })

/** Compresses with the platform's `CompressionStream` (zlib in Node.js). */
export const compress = (bytes: Uint8Array, format: Compression) =>
  transform(bytes, new CompressionStream(format))

/** Reverses `compress`. */
export const decompress = (bytes: Uint8Array, format: Compression) =>
  transform(bytes, new DecompressionStream(format))

/** The compression a message's flags name, if any. */
export const compressionOf = (flagBits: number): Compression | undefined =>
  flagBits & flags.gzip ? "gzip" : flagBits & flags.deflate ? "deflate" : undefined
