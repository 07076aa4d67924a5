import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { WsopsClient } from "../../../wsops/static/wsops-client.js";
import { App } from "./App.js";

const params = new URLSearchParams(location.search);
// One client per page, connected once; components only subscribe (useRoom).
const client = new WsopsClient(params.get("ws") ?? "ws://127.0.0.1:8765/ws", {
  token: params.get("token"),
  backoffCapMs: 2000,
});
client.connect().catch(console.error);

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App client={client} room={params.get("room") ?? "chat:lobby"} />
  </StrictMode>,
);
