import { provideZonelessChangeDetection } from "@angular/core";
import { bootstrapApplication } from "@angular/platform-browser";

import { WsopsClient } from "../../../wsops/static/wsops-client.js";
import { provideWsops } from "../src/index.js";
import { App } from "./app.js";

const params = new URLSearchParams(location.search);

bootstrapApplication(App, {
  providers: [
    provideZonelessChangeDetection(),
    // One client per app, connected once; components only follow rooms (WsopsService.room).
    provideWsops(() => {
      const client = new WsopsClient(params.get("ws") ?? "ws://127.0.0.1:8765/ws", {
        token: params.get("token"),
        backoffCapMs: 2000,
      });
      client.connect().catch(console.error);
      return client;
    }),
  ],
}).catch(console.error);
