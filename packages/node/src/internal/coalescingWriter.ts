import type * as Net from "node:net"

/**
 * Frames written in one turn of the event loop leave as one `socket.write`: the flush runs on
 * `setImmediate`, after every read callback of the turn (and every fiber they woke) has written,
 * where `process.nextTick` would flush after each read callback. A write system call costs 10–15 µs
 * here, so under load the larger batches matter more than the few µs the flush waits. Frames
 * written while no socket is attached wait for `attach`.
 */
export interface CoalescingWriter {
  readonly attach: (socket: Net.Socket) => void
  readonly detach: (socket: Net.Socket) => void
  readonly write: (frame: Uint8Array | string) => void
  /** writes the pending frames now (before the socket is ended, say) */
  readonly flush: () => void
  /** drops the frames not yet written (their connection failed) */
  readonly clear: () => void
}

export const makeCoalescingWriter = (): CoalescingWriter => {
  let target: Net.Socket | undefined
  let pending: Array<Uint8Array> = []
  let scheduled = false

  const flush = () => {
    scheduled = false
    if (!target || pending.length === 0) return
    const frames = pending
    pending = []
    target.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames))
  }

  const schedule = () => {
    if (scheduled || !target) return
    scheduled = true
    setImmediate(flush)
  }

  return {
    attach: (socket) => {
      target = socket
      if (pending.length > 0) schedule()
    },
    detach: (socket) => {
      if (target === socket) target = undefined
    },
    write: (frame) => {
      pending.push(typeof frame === "string" ? Buffer.from(frame) : frame)
      schedule()
    },
    flush,
    clear: () => {
      pending = []
    }
  }
}
