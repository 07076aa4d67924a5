// Runs probe.mjs under Node: one JSON request per stdin line ({id, method, args}), one JSON
// answer per stdout line ({id, ok, value | error}). The client's own warnings go to stderr.
import { createInterface } from "node:readline";

import * as lib from "../../wsops/static/wsops-client.js";
import { makeProbe } from "./probe.mjs";

const probe = makeProbe(lib);
const lines = createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const { id, method, args } = JSON.parse(line);
  const answer = await probe.run(method, args);
  process.stdout.write(`${JSON.stringify({ id, ...answer })}\n`);
});
lines.on("close", () => process.exit(0));
