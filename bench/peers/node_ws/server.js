// The broadcast server a typical Node user writes with `ws`, a peer of bench/peers.py.
//
// Every text frame received on /ws goes, unchanged, to every *other* open client: the loop
// from the `ws` README ("broadcast to all connected clients, excluding itself"). Default
// WebSocketServer settings (permessage-deflate is off by default in `ws`). GET /healthz answers
// 200 once it listens.
//
// Run: node bench/peers/node_ws/server.js --port 8767  (after `npm ci` in this directory);
// SIGTERM or SIGINT stops it.
'use strict';

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = option('--host', '127.0.0.1');
const port = Number(option('--port', '8767'));

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ok');
  } else {
    res.writeHead(404);
    res.end();
  }
});

const wss = new WebSocketServer({ server, path: '/ws' });

wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    wss.clients.forEach((client) => {
      if (client !== ws && client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    });
  });
});

server.listen(port, host, () => {
  console.log(`node ws ${require('ws/package.json').version} broadcast serving ` +
              `ws://${host}:${port}/ws (node ${process.version})`);
});

function stop() {
  for (const client of wss.clients) client.terminate();
  wss.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
