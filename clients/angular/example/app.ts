import { ChangeDetectionStrategy, Component, inject, signal } from "@angular/core";

import { WsopsService } from "../src/index.js";

interface Line {
  text: string;
}

@Component({
  selector: "app-root",
  changeDetection: ChangeDetectionStrategy.OnPush,
  template: `
    <main>
      <p id="state" [attr.data-state]="chat.state()">{{ chat.state() }}</p>
      @if (chat.loading()) { <p id="loading">loading history</p> }
      @if (chat.gaps() > 0) {
        <p id="gaps" [attr.data-gaps]="chat.gaps()">Some messages were missed: history reloaded.</p>
      }
      @if (chat.error(); as error) { <p id="error">{{ error.message }}</p> }
      <ul id="users">
        @for (user of chat.users(); track user) { <li [attr.data-user]="user">{{ user }}</li> }
      </ul>
      <ul id="messages">
        @for (m of chat.messages(); track m.epoch + ":" + m.offset) {
          <li [attr.data-offset]="m.offset" [attr.data-epoch]="m.epoch">
            <b>{{ m.from }}</b> <span class="text">{{ m.data.text }}</span>
          </li>
        }
      </ul>
      <form (submit)="send($event)">
        <input #box id="text" [value]="text()" (input)="text.set(box.value)">
        <button id="send" type="submit">Send</button>
      </form>
    </main>
  `,
})
export class App {
  readonly chat = inject(WsopsService).room<Line>(
    new URLSearchParams(location.search).get("room") ?? "chat:lobby", { limit: 50 });
  readonly text = signal("");

  send(event: Event): void {
    event.preventDefault();
    this.chat.publish({ text: this.text() }).then(() => this.text.set(""), console.error);
  }
}
