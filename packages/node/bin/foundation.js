#!/usr/bin/env node
// Runs src/bin.ts through tsx's loader (tsx is a dev dependency of the workspace).
import { register } from "tsx/esm/api"

register()
await import("../src/bin.ts")
