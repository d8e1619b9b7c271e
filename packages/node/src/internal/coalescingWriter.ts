import type * as Net from "node:net"

/**
 * Frames pending that are written at once, without waiting for the end of the turn: the peer starts
 * on them while this side produces the rest.
 */
export const earlyFlushFrames = 32

/** The smallest buffer a writer takes for its pending bytes. */
const minBufferBytes = 64 * 1024

/** Free buffers a writer keeps, and the largest it keeps. */
const maxFreeBuffers = 2
const maxKeptBytes = 4 * 1024 * 1024

const capacityFor = (bytes: number) => 2 ** Math.ceil(Math.log2(Math.max(bytes, minBufferBytes)))

/**
 * Frames written in one turn of the event loop leave as one `socket.write`: the flush runs on
 * `setImmediate`, after every read callback of the turn (and every fiber they woke) has written,
 * where `process.nextTick` would flush after each read callback. A write system call costs 10–15 µs
 * here, so under load the larger batches matter more than the few µs the flush waits. Frames
 * written while no socket is attached wait for `attach`.
 *
 * A turn that writes many frames flushes every `earlyFlushFrames` of them: with a whole turn's
 * frames in one write, caller and callee took turns (the callee idle while the caller produced a
 * batch of 100 requests, the caller idle while the callee answered them), and node RPC ran at the
 * rate of their summed CPU per call; with early flushes they overlap (55k to 76k calls/s at 100 in
 * flight, see docs/performance.md).
 *
 * A frame is copied into the writer's buffer when it is written, so the caller may reuse its bytes
 * at once (`msgpackFrames.packTransient`), and the buffer is reused once the socket has written it.
 * Under a flood of bulk messages, a new buffer per flush (and msgpackr's new buffer every few large
 * values) forced full, stop-the-world GCs for external memory on the sender, delaying its urgent
 * frames.
 */
export interface CoalescingWriter {
  readonly attach: (socket: Net.Socket) => void
  readonly detach: (socket: Net.Socket) => void
  /** copies a frame for the next flush */
  readonly write: (frame: Uint8Array | string) => void
  /** writes the pending frames now (before the socket is ended, say) */
  readonly flush: () => void
  /** drops the frames not yet written (their connection failed) */
  readonly clear: () => void
}

export const makeCoalescingWriter = (): CoalescingWriter => {
  let target: Net.Socket | undefined
  let pending: Buffer | undefined
  let pendingBytes = 0
  let pendingFrames = 0
  let scheduled = false
  const free: Array<Buffer> = []

  const takeBuffer = (bytes: number): Buffer => {
    const index = free.findIndex((buffer) => buffer.length >= bytes)
    return index >= 0 ? free.splice(index, 1)[0]! : Buffer.allocUnsafeSlow(capacityFor(bytes))
  }

  const giveBack = (buffer: Buffer) => {
    if (free.length < maxFreeBuffers && buffer.length <= maxKeptBytes) free.push(buffer)
  }

  const room = (bytes: number): Buffer => {
    if (pending === undefined) return (pending = takeBuffer(bytes))
    if (pending.length >= pendingBytes + bytes) return pending
    const larger = takeBuffer(pendingBytes + bytes)
    pending.copy(larger, 0, 0, pendingBytes)
    giveBack(pending)
    return (pending = larger)
  }

  const flush = () => {
    scheduled = false
    if (!target || pending === undefined || pendingBytes === 0) return
    const buffer = pending
    const bytes = pendingBytes
    pending = undefined
    pendingBytes = 0
    pendingFrames = 0
    target.write(buffer.subarray(0, bytes), () => giveBack(buffer))
  }

  const schedule = () => {
    if (scheduled || !target) return
    scheduled = true
    setImmediate(flush)
  }

  return {
    attach: (socket) => {
      target = socket
      if (pendingBytes > 0) schedule()
    },
    detach: (socket) => {
      if (target === socket) target = undefined
    },
    write: (frame) => {
      const bytes = typeof frame === "string" ? Buffer.from(frame) : frame
      room(bytes.length).set(bytes, pendingBytes)
      pendingBytes += bytes.length
      if (++pendingFrames >= earlyFlushFrames && target) flush()
      else schedule()
    },
    flush,
    clear: () => {
      pendingBytes = 0
      pendingFrames = 0
    }
  }
}
