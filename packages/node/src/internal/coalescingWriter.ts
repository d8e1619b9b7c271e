import type * as Net from "node:net"

/**
 * Frames written in one tick leave as one `socket.write`: the flush runs on `process.nextTick`,
 * after every fiber woken in the same turn has written. Frames written while no socket is attached
 * wait for `attach`.
 */
export interface CoalescingWriter {
  readonly attach: (socket: Net.Socket) => void
  readonly detach: (socket: Net.Socket) => void
  readonly write: (frame: Uint8Array | string) => void
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
    process.nextTick(flush)
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
    clear: () => {
      pending = []
    }
  }
}
