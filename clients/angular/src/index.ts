export { WSOPS_CLIENT, WsopsService, provideWsops, type WsopsRoom, type WsopsRoomOptions } from "./wsops.service.js";
export { type RoomOptions, type RoomSnapshot } from "../../shared/roomFeed.js";
