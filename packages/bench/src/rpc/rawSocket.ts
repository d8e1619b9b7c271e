/**
 * The limit: a plain `node:net` echo of length-prefixed frames (a 4-byte big-endian length, then the
 * payload), with no framework at all. Two variants on both ends:
 * - `perFrame`: one `socket.write` per frame;
 * - `coalesced`: the frames written in one event-loop tick go out in one `socket.write`.
 */
import * as net from "node:net"
import { served } from "./Echo.js"

export type WriteMode = "perFrame" | "coalesced"

/** The request payload: about the size of the msgpack-encoded entity call. */
const requestPayload = Buffer.alloc(96, 7)

/** Writes frames to a socket, one write each or coalesced per tick. */
const makeWriter = (socket: net.Socket, mode: WriteMode) => {
  if (mode === "perFrame") return (frame: Buffer) => void socket.write(frame)
  let pending: Array<Buffer> = []
  const flush = () => {
    const frames = pending
    pending = []
    socket.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames))
  }
  return (frame: Buffer) => {
    if (pending.push(frame) === 1) process.nextTick(flush)
  }
}

/** Splits a byte stream into frames (each returned with its 4-byte header). */
const makeReader = (onFrame: (frame: Buffer) => void) => {
  let buffer: Buffer = Buffer.alloc(0)
  return (chunk: Buffer) => {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk])
    let offset = 0
    while (buffer.length - offset >= 4) {
      const size = 4 + buffer.readUInt32BE(offset)
      if (buffer.length - offset < size) break
      onFrame(buffer.subarray(offset, offset + size))
      offset += size
    }
    buffer = offset === buffer.length ? Buffer.alloc(0) : buffer.subarray(offset)
  }
}

const frameOf = (payload: Buffer) => {
  const frame = Buffer.allocUnsafe(4 + payload.length)
  frame.writeUInt32BE(payload.length, 0)
  payload.copy(frame, 4)
  return frame
}

/** An echo server on `port`: every frame is sent back as it came. Resolves with the listening server. */
export const listenEcho = (host: string, port: number, mode: WriteMode) =>
  new Promise<net.Server>((resolve, reject) => {
    const server = net.createServer((socket) => {
      socket.setNoDelay(true)
      const write = makeWriter(socket, mode)
      socket.on(
        "data",
        makeReader((frame) => {
          served.count++
          write(frame)
        })
      )
      socket.on("error", () => socket.destroy())
    })
    server.once("error", reject)
    server.listen(port, host, () => resolve(server))
  })

/** What one closed-loop run measured. */
export interface RawResult {
  readonly calls: number
  readonly elapsedMs: number
  /** per-call round trips in ms, only when asked for */
  readonly latencies: Array<number>
}

/**
 * Keeps `inFlight` requests outstanding on one connection for `millis`, then waits for the last
 * answers. Rejects after `millis + 30 s` if the answers stop.
 */
export const runEchoClient = (options: {
  readonly host: string
  readonly port: number
  readonly mode: WriteMode
  readonly inFlight: number
  readonly millis: number
  readonly latencies: boolean
}) =>
  new Promise<RawResult>((resolve, reject) => {
    const socket = net.connect({ host: options.host, port: options.port })
    socket.setNoDelay(true)
    const write = makeWriter(socket, options.mode)
    const frame = frameOf(requestPayload)
    const sentAt: Array<number> = []
    const latencies: Array<number> = []
    let calls = 0
    let outstanding = 0
    let startedAt = 0
    let deadline = 0
    const guard = setTimeout(() => {
      socket.destroy()
      reject(new Error(`raw echo: answers stopped (${outstanding} outstanding)`))
    }, options.millis + 30_000)
    const send = () => {
      outstanding++
      if (options.latencies) sentAt.push(performance.now())
      write(frame)
    }
    socket.on("error", (error) => {
      clearTimeout(guard)
      reject(error)
    })
    socket.on(
      "data",
      makeReader(() => {
        outstanding--
        calls++
        const now = performance.now()
        if (options.latencies) latencies.push(now - sentAt.shift()!)
        if (now < deadline) send()
        else if (outstanding === 0) {
          clearTimeout(guard)
          const elapsedMs = performance.now() - startedAt
          socket.end()
          resolve({ calls, elapsedMs, latencies })
        }
      })
    )
    socket.once("connect", () => {
      startedAt = performance.now()
      deadline = startedAt + options.millis
      for (let i = 0; i < options.inFlight; i++) send()
    })
  })
