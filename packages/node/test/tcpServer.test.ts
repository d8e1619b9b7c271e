import * as SocketServer from "@effect/platform/SocketServer"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Net from "node:net"
import * as TcpServer from "../src/internal/tcpServer.js"

/** Opens a new connection to `port` as soon as the previous one opens, until the returned function is called. */
const connectForever = (port: number) => {
  let running = true
  const sockets: Array<Net.Socket> = []
  const connect = () => {
    if (!running) return
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.on("error", () => setTimeout(connect, 5))
    socket.on("connect", connect)
    sockets.push(socket)
  }
  connect()
  return () => {
    running = false
    for (const socket of sockets) socket.destroy()
  }
}

describe("the TCP socket server", () => {
  it.live("closes even when connections arrive while its handlers are still stopping", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const server = yield* TcpServer.make({ host: "127.0.0.1", port: 0 }).pipe(Scope.extend(scope))
      const port = (server.address as SocketServer.TcpAddress).port
      const serving = yield* server
        .run(() => Effect.never.pipe(Effect.onInterrupt(() => Effect.sleep("300 millis"))))
        .pipe(Effect.fork)
      const stop = connectForever(port)
      yield* Effect.sleep("100 millis")
      const closed = yield* Fiber.interrupt(serving).pipe(
        Effect.zipRight(Scope.close(scope, Exit.void)),
        Effect.disconnect,
        Effect.timeout("5 seconds"),
        Effect.exit
      )
      stop()
      expect(Exit.isSuccess(closed)).toBe(true)
    })
  )
})
