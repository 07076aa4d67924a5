export { type Room, useRoom } from "./useRoom.js";
export { type RoomOptions, type RoomSnapshot } from "../../shared/roomFeed.js";
