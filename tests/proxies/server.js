// A tiny Node `http` upstream for the path differential test (tests/proxies/node.py): answers
// every request with the raw request target it received and the path a Node app routes on,
// the WHATWG URL parser's pathname (what `new URL(req.url, base)` gives an app or a router).
"use strict";
const http = require("http");

const port = Number(process.argv[2]);
http
  .createServer((req, res) => {
    let routed = null;
    try {
      // Prefixed, not resolved against a base: "//x" is a path here, not a host.
      routed = new URL("http://upstream" + req.url).pathname;
    } catch (e) {
      routed = null;
    }
    const body = JSON.stringify({
      method: req.method,
      path: req.url,
      routed: routed,
      headers: Object.entries(req.headers),
    });
    res.writeHead(200, {
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(body),
    });
    res.end(body);
  })
  .listen(port, "127.0.0.1");
