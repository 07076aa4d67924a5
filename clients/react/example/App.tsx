import { type FormEvent, useState } from "react";

import { type WsopsClient } from "../../../wsops/static/wsops-client.js";
import { useRoom } from "../src/index.js";

interface Line {
  text: string;
}

export function App({ client, room }: { client: WsopsClient; room: string }) {
  const { state, messages, users, loading, gaps, error, publish } = useRoom<Line>(client, room, { limit: 50 });
  const [text, setText] = useState("");
  const send = (event: FormEvent) => {
    event.preventDefault();
    publish({ text }).then(() => setText(""), console.error);
  };
  return (
    <main>
      <p id="state" data-state={state}>{state}</p>
      {loading && <p id="loading">loading history</p>}
      {gaps > 0 && <p id="gaps" data-gaps={gaps}>Some messages were missed: history reloaded.</p>}
      {error && <p id="error">{error.message}</p>}
      <ul id="users">
        {users.map((user) => <li key={user} data-user={user}>{user}</li>)}
      </ul>
      <ul id="messages">
        {messages.map((m) => (
          <li key={`${m.epoch}:${m.offset}`} data-offset={m.offset} data-epoch={m.epoch}>
            <b>{m.from}</b> <span className="text">{m.data.text}</span>
          </li>
        ))}
      </ul>
      <form onSubmit={send}>
        <input id="text" value={text} onChange={(e) => setText(e.target.value)} />
        <button id="send" type="submit">Send</button>
      </form>
    </main>
  );
}
