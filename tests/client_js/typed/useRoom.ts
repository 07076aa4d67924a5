// The README's React hook, type-checked with the example (tsc -p tests/client_js/typed).
import { useEffect, useState } from "react";

import { type ClientState, type Message, WsopsClient } from "../../../wsops/static/wsops-client.js";

export function useRoom<T>(client: WsopsClient, room: string) {
  const [messages, setMessages] = useState<Message<T>[]>([]);
  const [state, setState] = useState<ClientState>(client.state);
  useEffect(() => {
    const append = (m: Message) => {
      if (m.room !== room) return;
      setMessages((ms) => {
        const last = ms[ms.length - 1];   // history and live messages may overlap
        return last && last.epoch === m.epoch && last.offset >= m.offset ? ms : [...ms, m as Message<T>];
      });
    };
    const reload = () => client.history<T>(room, 100).then(setMessages, console.error);
    const offMessage = client.on("message", append);
    const offGap = client.on("gap", (g) => { if (g.room === room) reload(); });   // missed some
    const offState = client.on("state", setState);
    client.subscribe(room).then(reload, console.error);
    return () => {
      offMessage(); offGap(); offState();
      client.unsubscribe(room).catch(() => {});
    };
  }, [client, room]);
  return { messages, state, publish: (data: T) => client.publish(room, data) };
}
