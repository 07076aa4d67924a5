import { createApp } from "vue";

import { WsopsClient } from "../../../wsops/static/wsops-client.js";
import App from "./App.vue";

const params = new URLSearchParams(location.search);
// One client per page, connected once; components only subscribe (useRoom).
const client = new WsopsClient(params.get("ws") ?? "ws://127.0.0.1:8765/ws", {
  token: params.get("token"),
  backoffCapMs: 2000,
});
client.connect().catch(console.error);

createApp(App, { client, room: params.get("room") ?? "chat:lobby" }).mount("#app");
