import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import { Packr, RESET_BUFFER_MODE } from "msgpackr"

const options = { useRecords: false, mapsAsObjects: true } as const

/**
 * The serialization of both socket endpoints: msgpack (framed, so safe on raw TCP) without
 * msgpackr's record extension. The engine's `RpcSerialization.msgPack` defines a record in every
 * frame, since no structures are shared between frames, which costs twice the packing and unpacking
 * time for small messages.
 */
export const serialization: RpcSerialization.RpcSerialization["Type"] = RpcSerialization.makeMsgPack(options)

const packr = new Packr(options)

/**
 * The bytes `serialization` writes for a message, packed in place in msgpackr's shared buffer
 * (`RESET_BUFFER_MODE`): valid only until the next pack, so the caller copies them at once (the
 * coalescing writer does). A plain `pack` returns a view and moves on, and msgpackr replaces a full
 * buffer with a new one four times the size of the value that did not fit: for bulk messages that
 * is a new external allocation every few frames, and those forced full GCs on a flooding sender.
 */
export const packTransient = (message: FromClientEncoded | FromServerEncoded): Uint8Array =>
  packr.pack(message, RESET_BUFFER_MODE)

/** `packTransient` when `serialization_` is this module's `serialization` (whose bytes it writes). */
export const transientPacker = (
  serialization_: RpcSerialization.RpcSerialization["Type"]
): typeof packTransient | undefined => (serialization_ === serialization ? packTransient : undefined)
