/** What `channels.test.ts` and its worker processes share. */
import * as Channels from "@foundation/core/Channels"
import * as SharedConfig from "@foundation/core/SharedConfig"
import * as Schema from "effect/Schema"

export class Order extends Schema.Class<Order>("Order")({
  id: Schema.String,
  total: Schema.Number,
  placedAt: Schema.Date
}) {}

/** A typed topic on the control lane. */
export const Orders = Channels.topic("test.orders", Order, { channel: "control" })

export const Flag = SharedConfig.key("test.flag", Schema.Boolean, { default: false })
